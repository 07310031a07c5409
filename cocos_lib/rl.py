"""The RL step of CoCoS: RLOO advantages, KL to pi_ref, the policy-gradient loss, one update.

Per trajectory i (one task, one of k samples) with turn rewards r_1..r_T the score is

    s_i = R_i - beta * sum_{t in train_turns} KL_t(i),   R_i = gamma^(T-1) r_1 + sum_{t>=2} gamma^(T-t) (r_t - r_{t-1})
    KL_t(i) = sum_{tokens y of turn t} [log pi_theta(y | .) - log pi_ref(y | .)]      (k1 estimator, as TRL's RLOO)

and the RLOO advantage inside each group of k samples of one task is A_i = s_i - mean_{j != i} s_j.
The loss is the PPO-clip surrogate on the completion tokens of `train_turns` (sum over tokens,
mean over trajectories, as TRL's RLOO); with one epoch the ratio is 1 and the gradient is the
plain policy gradient -(1/N) sum_i A_i grad sum_t log pi_theta(y_t).
With a shared turn 1 (as released) gamma r_1 and -r_1 are the same for the k members of a
group and cancel in A_i: for T = 2, gamma has no effect on the gradient.

kl="token" instead leaves the KL out of the score and penalises each token:
    A_(i,t) = (R_i - mean_{j != i} R_j) - beta * (log pi_theta - log pi_ref)(y_t),
whose gradient term beta d_t grad log pi(y_t) estimates grad sum_t KL(pi(.|s_t) || pi_ref(.|s_t)).
The reported loss is ~0 at every update (sum_i A_i = 0 in each group and rho = 1): watch the
rewards and the KL, not the loss.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Sequence

import torch

from cocos_lib.generation.static import release_static_cache
from cocos_lib.logprobs import Batch, build_batch, logprobs_no_grad, reference_logprobs, token_logprobs
from cocos_lib.modes import dropout_off, mode
from cocos_lib.optim import TrainingDiverged, optimizer_step
from cocos_lib.trajectory import Trajectory

KL_MODES = ("sequence", "token")


@dataclass
class RLConfig:
    """Knobs of one update.

    gamma: discount of the accumulated reward R. kl_coef: beta. kl: "sequence" (beta * KL_t(i)
    subtracted from the score before RLOO, as released) or "token" (the per-token penalty
    -beta * (log pi - log pi_ref)(y_t) added to that token's advantage, outside the baseline).
    cliprange: PPO clip epsilon (None: plain policy gradient). train_turns: 1-based turns whose
    completion tokens get the reward gradient. first_turn_kl_coef: beta_1 >= 0, SCoRe Stage I's
    extra KL on turn 1 (see `first_turn_kl_loss`), applied even when turn 1 is not trained.
    micro_batch: rows (one turn of one trajectory) per forward/backward. max_grad_norm: clip
    (None: no clipping, as the release; 1.0 by default here, a guard). temperature: logits are
    divided by it before log-softmax, as TRL does, so log-probs are those of the sampling distribution. ignore_eos (the knob of
    TrainConfig and SamplingConfig of the same name): completions that ran past
    EOS (SamplingConfig.ignore_eos, the released no-stop rollouts) count only up to their first
    pad-id token, excluded (logprobs.build_batch), as TRL's RLOO in the release. Then KL_t(i) sums
    over every token up to that point, not only up to [DONE]: up to max_new_tokens = 512 per row
    (all of them for Llama-3.2, whose released pad 128004 is never sampled), several times the
    tokens of a stopped answer, so beta weighs more against R, and the tokens after [DONE], which
    no reward sees, carry KL and gradient. top_k > 0 (TrainConfig.top_k, the knob that sampled y) (the release: HF's default top_k 50 in
    sampling): log pi_old is the top-k-renormalised softmax(logits / T) that sampled y_t, as the
    release's old log-probs (generate's processed scores), while log pi_theta (in the ratio) and
    log pi_ref stay the full softmax(logits / T). Then at one epoch log rho_i = sum_t log M_t <= 0,
    M_t = the top-k mass at step t: over 512 tokens rho_i drops below 1 - eps, so A_i < 0 rows are
    clipped (no gradient) and A_i > 0 rows get rho_i A_i; and KL_t(i) gains sum_t -log M_t >= 0,
    non-zero even at pi_theta = pi_ref. Costs one more no-grad forward per micro-batch.
    """
    gamma: float = 0.5                        # discount of R
    kl_coef: float = 0.01                     # beta
    kl: str = "sequence"                      # "sequence" (in the score) | "token" (per-token advantage)
    cliprange: float | None = 0.2             # PPO clip epsilon; None: plain policy gradient
    train_turns: tuple[int, ...] = (2,)       # 1-based turns whose tokens get the reward gradient
    first_turn_kl_coef: float = 0.0           # beta_1: SCoRe Stage I direct KL on turn 1
    micro_batch: int = 8                      # rows per forward/backward
    max_grad_norm: float | None = 1.0         # gradient clipping; None: none (the release)
    temperature: float = 1.0                  # log-probs of softmax(logits / temperature)
    ignore_eos: bool = False                  # rows ran past EOS: cut them at their first pad token (build_batch)
    top_k: int = 0                            # > 0: y was sampled top-k: pi_old is top-k renormalised

    def __post_init__(self):
        self.train_turns = tuple(int(t) for t in self.train_turns)
        if self.kl not in KL_MODES:
            raise ValueError(f"RLConfig.kl='{self.kl}': expected one of {KL_MODES}")
        if not self.train_turns or min(self.train_turns) < 1:
            raise ValueError(f"RLConfig.train_turns={self.train_turns}: need turn indices >= 1")
        if self.micro_batch < 1:
            raise ValueError(f"RLConfig.micro_batch={self.micro_batch}: must be >= 1")
        if self.top_k < 0:
            raise ValueError(f"RLConfig.top_k={self.top_k}: must be >= 0 (0: off)")


# ------------------------------------------------------------------------- pure tensor math

def rloo_advantages(scores: torch.Tensor) -> torch.Tensor:
    """scores [G, k] -> A [G, k] with A_i = s_i - 1/(k-1) sum_{j != i} s_j (leave-one-out baseline)."""
    if scores.dim() != 2 or scores.shape[1] < 2:
        raise ValueError(f"rloo_advantages: need scores of shape [G, k] with k >= 2, got {tuple(scores.shape)}")
    k = scores.shape[1]
    baseline = (scores.sum(1, keepdim=True) - scores) / (k - 1)
    return scores - baseline


def grpo_advantages(scores: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """scores [G, k] -> GRPO's A [G, k] = (s_i - mean_j s_j) / (std_j s_j + eps), for comparison only.

    As TRL's GRPO: the mean includes s_i itself and std is the unbiased one (k - 1). RLOO's A is
    k/(k-1) (s_i - mean_j s_j): the same direction, without the per-group rescaling by 1/std."""
    if scores.dim() != 2 or scores.shape[1] < 2:
        raise ValueError(f"grpo_advantages: need scores of shape [G, k] with k >= 2, got {tuple(scores.shape)}")
    return (scores - scores.mean(1, keepdim=True)) / (scores.std(1, keepdim=True) + eps)


def equal_group_share(values: torch.Tensor) -> float:
    """values [G, k] (returns R or scores s) -> the share of groups whose k values are all equal.
    With equal scores a group's RLOO advantages are all 0: it adds nothing to the gradient."""
    return float((values == values[:, :1]).all(1).float().mean())


def sequence_kl(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(i) = sum_t mask_t (log pi(y_t) - log pi_ref(y_t)) per row: the k1 estimator of TRL's RLOO. [B]"""
    return ((logp - ref_logp) * mask).sum(-1)


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, cliprange: float | None = 0.2) -> torch.Tensor:
    """PPO-clip surrogate summed over rows (divide by N yourself); pads (mask 0) excluded.

    advantages [B] (sequence level, TRL's RLOO): rho_i = exp(sum_t (log pi - log pi_old)(y_t)),
        loss = sum_i max(-A_i rho_i, -A_i clip(rho_i, 1-eps, 1+eps)).
    advantages [B, L] (token level): rho_{i,t} per token, loss = sum_{i,t} mask * max(...).
    At rho = 1 (one epoch) both have gradient -sum_i sum_t A_(i,t) grad log pi(y_t).
    """
    diff = (logp - old_logp) * mask
    if advantages.dim() == 1:
        ratio = torch.exp(diff.sum(-1))
        weights = torch.ones_like(ratio)
    else:
        ratio, weights = torch.exp(diff), mask
    loss = -advantages * ratio
    if cliprange is not None:
        loss = torch.max(loss, -advantages * torch.clamp(ratio, 1 - cliprange, 1 + cliprange))
    has_tokens = mask.sum(-1) > 0 if advantages.dim() == 1 else 1.0
    return (loss * weights * has_tokens).sum()


def clip_fraction(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                  mask: torch.Tensor, cliprange: float) -> tuple[float, int]:
    """(count, of) where the clip is active, as TRL's pg_clipfrac: the clipped term
    -A clip(rho, 1-eps, 1+eps) is the larger one (so that sample's gradient is zero). Rows with
    |rho - 1| > eps but the unclipped term larger (A < 0 and rho > 1+eps, A > 0 and rho < 1-eps,
    A = 0) are not counted. Sequence advantages [B]: rows with tokens; token level [B, L]: tokens."""
    diff = (logp - old_logp) * mask
    token_level = advantages.dim() == 2
    ratio = torch.exp(diff) if token_level else torch.exp(diff.sum(-1))
    active = -advantages * torch.clamp(ratio, 1 - cliprange, 1 + cliprange) > -advantages * ratio
    counted = mask > 0 if token_level else mask.sum(-1) > 0
    return float((active & counted).sum()), int(counted.sum())


def first_turn_kl_loss(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum over rows of sum_t 1/2 (log pi(y_t) - log pi_ref(y_t))^2 (k2 estimator), the turn-1 KL term.

    With y_t ~ pi(.|s_t) its gradient d_t grad log pi(y_t) is an unbiased estimate of
    grad KL(pi(.|s_t) || pi_ref(.|s_t)) at each visited state s_t: the loss
    beta_1 * (1/N) sum_i sum_{t in turn 1} KL(pi(.|s_t) || pi_ref(.|s_t)) of SCoRe Stage I.
    It is a direct loss term, not part of the score: with a shared turn 1 a score penalty
    would be equal inside each group and cancel in the RLOO advantage. It is added whether or
    not turn 1 is in train_turns (if it is, turn 1's KL also enters the score with beta).
    The SCoRe-style ablation (docs/paper.md §7: reward collapse of small models) uses beta_1 = 0.25.
    """
    return (0.5 * (logp - ref_logp) ** 2 * mask).sum()


def _group_matrix(trajectories: Sequence[Trajectory]) -> torch.Tensor:
    """Index matrix [G, k] of trajectory positions per group (groups must all have k >= 2 members)."""
    groups: dict[int, list[int]] = {}
    for i, traj in enumerate(trajectories):
        groups.setdefault(traj.group, []).append(i)
    sizes = {len(v) for v in groups.values()}
    if len(sizes) != 1 or min(sizes) < 2:
        raise ValueError(f"rl_step: every group needs the same k >= 2 samples, got group sizes {sorted(sizes)}")
    return torch.tensor(list(groups.values()), dtype=torch.long)


# --------------------------------------------------------------------- stages of one update

@dataclass
class Rows:
    """Stage 1: what one update trains on."""
    batch: Batch            # B rows (trajectory, turn), right-padded
    turns: list[int]        # the turns that have rows: train_turns (+ turn 1 when beta_1 > 0)
    trained: torch.Tensor   # [B] bool: the row's turn is in train_turns (gets the reward gradient)
    R: torch.Tensor         # [N] accumulated reward of each trajectory
    groups: torch.Tensor    # [G, k] trajectory indices per group


def select_rows(policy, trajectories: Sequence[Trajectory], groups: torch.Tensor, cfg: RLConfig) -> Rows:
    """Stage 1: the rows (trajectory, turn) of the trained turns (+ turn 1 when beta_1 > 0) and R_i."""
    T = min(len(t.turns) for t in trajectories)
    if max(cfg.train_turns) > T:
        raise ValueError(f"rl_step: train_turns={cfg.train_turns} but trajectories have {T} turns")
    turns = sorted(set(cfg.train_turns) | ({1} if cfg.first_turn_kl_coef > 0 else set()))
    batch = build_batch(trajectories, turns, policy.tokenizer.pad_token_id or 0, policy.device,
                        mask_from_pad=cfg.ignore_eos)
    dev = batch.mask.device
    trained = torch.tensor([int(t) in cfg.train_turns for t in batch.turn.tolist()], device=dev)        # [B]
    R = torch.tensor([t.accumulated(cfg.gamma) for t in trajectories], dtype=torch.float32, device=dev)  # [N]
    return Rows(batch, turns, trained, R, groups.to(dev))


def fused_chunks(groups: torch.Tensor, rows_per_traj: int, micro: int) -> list[tuple[slice, torch.Tensor]] | None:
    """The fused path's micro-batches: (row slice, its groups [Gc, k]) holding whole groups, so that
    one forward per micro-batch gives pi_theta with grad, pi_old (= pi_theta detached at one epoch)
    and, with pi_ref, the groups' scores and advantages before their loss. None when a group's rows
    (rows_per_traj * k) exceed `micro` or trajectories are not ordered by group (as rollout returns
    them): then every row's log-probs come first, in a no-grad pass."""
    G, k = groups.shape
    per_group = rows_per_traj * k
    in_order = torch.equal(groups.flatten(), torch.arange(G * k, device=groups.device))
    per = micro // per_group if in_order else 0  # whole groups per micro-batch
    if per < 1:
        return None
    return [(slice(g * per_group, min(G, g + per) * per_group), groups[g:g + per]) for g in range(0, G, per)]


def row_kl(old_logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, trained: torch.Tensor) -> torch.Tensor:
    """Per row sum_t (log pi_old - log pi_ref)(y_t) on completion tokens, 0 for untrained rows: [B]."""
    return ((old_logp - ref_logp) * mask).sum(-1) * trained


def scores_and_advantages(R: torch.Tensor, kl_rows: torch.Tensor, traj: torch.Tensor, groups: torch.Tensor,
                          cfg: RLConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stage 3, pure: R [N], row KLs kl_rows [B] of trajectories traj [B], groups [Gc, k] -> (A, KL, s), each
    [Gc, k]: KL(i) = sum of its rows' KL, s_i = R_i - beta KL(i) ("sequence") or R_i ("token"),
    A_i = s_i - mean_{j != i} s_j within each group."""
    kl = torch.zeros_like(R).index_add_(0, traj, kl_rows)[groups]          # [Gc, k]
    score = R[groups] - cfg.kl_coef * kl if cfg.kl == "sequence" else R[groups]  # [Gc, k]
    return rloo_advantages(score), kl, score


def microbatch_loss(logp: torch.Tensor, old: torch.Tensor, ref: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
                    trained: torch.Tensor, turn: torch.Tensor, n: int, cfg: RLConfig) -> tuple[torch.Tensor, dict]:
    """Stage 4: (1/N)[sum_rows policy_loss + beta_1 first_turn_kl_loss] of one micro-batch and its metrics.

    logp (with grad), old, ref, mask [b, L]; adv [b] (A_i of each row's trajectory); trained, turn [b].
    kl="token": A_(i,t) = A_i - beta (log pi_old - log pi_ref)(y_t). Metrics: clipped, clip_of (clip_fraction)."""
    tmask = mask * trained[:, None]                                        # [b, L] tokens with the reward gradient
    A = adv[:, None] - cfg.kl_coef * (old - ref) * mask if cfg.kl == "token" else adv  # [b, L] or [b]
    loss = policy_loss(logp, old, A, tmask, cfg.cliprange)
    if cfg.first_turn_kl_coef > 0:
        loss = loss + cfg.first_turn_kl_coef * first_turn_kl_loss(logp, ref, mask * (turn == 1)[:, None])
    metrics = {"clipped": 0.0, "clip_of": 0}
    if cfg.cliprange is not None:
        metrics["clipped"], metrics["clip_of"] = clip_fraction(logp.detach(), old, A, tmask, cfg.cliprange)
    return loss / n, metrics


@dataclass
class Scores:
    """Stage 3 of whole groups: A_i, KL(i) and s_i, each [Gc, k], of the trajectories `groups` [Gc, k]."""
    groups: torch.Tensor
    adv: torch.Tensor
    kl: torch.Tensor
    score: torch.Tensor

    def per_trajectory(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(A, KL, s) as [n] vectors indexed by trajectory (0 for trajectories outside these groups)."""
        idx = self.groups.flatten()
        return tuple(torch.zeros(n, dtype=v.dtype, device=v.device).index_copy(0, idx, v.flatten())
                     for v in (self.adv, self.kl, self.score))

    @staticmethod
    def cat(parts: Sequence["Scores"]) -> "Scores":
        return Scores(*(torch.cat([getattr(p, f) for p in parts]) for f in ("groups", "adv", "kl", "score")))


def score_groups(old: torch.Tensor, ref: torch.Tensor, rows: Batch, trained: torch.Tensor, R: torch.Tensor,
                 groups: torch.Tensor, cfg: RLConfig) -> Scores:
    """Stage 3 for the rows `rows` (every row of the trajectories in `groups` [Gc, k]): row KLs from
    log pi_old, log pi_ref [b, L] (`row_kl`), then `scores_and_advantages`. The fused and the two-pass
    paths both score through here."""
    kl_rows = row_kl(old, ref, rows.mask, trained)                          # [b]
    return Scores(groups, *scores_and_advantages(R, kl_rows, rows.traj, groups, cfg))


def all_rows_logprobs(policy, ref_model, batch: Batch, cfg: RLConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 2, two-pass path: (log pi_old, log pi_ref) [B, L-1] of every row, no grad."""
    old = logprobs_no_grad(policy.model, batch, cfg.micro_batch, cfg.temperature, cfg.top_k)
    ref = reference_logprobs(policy, ref_model, batch, cfg.micro_batch, cfg.temperature)
    return old, ref


def fused_logprobs(policy, ref_model, mb: Batch, logp: torch.Tensor, cfg: RLConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 2, fused path: (log pi_old, log pi_ref) [b, L] of one micro-batch; pi_old is the grad forward
    `logp` detached (one epoch), or with top_k the release's top-k pi_old (one more no-grad forward)."""
    B = mb.mask.shape[0]
    old = logp.detach()
    if cfg.top_k:
        old = logprobs_no_grad(policy.model, mb, B, cfg.temperature, cfg.top_k)
    return old.float() * mb.mask, reference_logprobs(policy, ref_model, mb, B, cfg.temperature)


def policy_logprobs(model, mb: Batch, temperature: float) -> torch.Tensor:
    """log pi_theta of one micro-batch, with grad: [b, L]; a non-finite value raises TrainingDiverged."""
    logp = token_logprobs(model, mb.input_ids, mb.attention_mask, mb.start(), temperature)
    if not bool(torch.isfinite(logp.detach()[mb.mask.bool()]).all()):  # fp16 overflow: stop, not skip
        raise TrainingDiverged(f"non-finite log-probs from the {next(model.parameters()).dtype} forward (an "
                               "activation overflowed); use dtype bf16 (compute >= 8.0) or fp32")
    return logp


# ------------------------------------------------------------------------------ one update

def rl_step(policy, ref_model, optimizer, scheduler, trajectories: Sequence[Trajectory], cfg: RLConfig,
            scaler=None) -> dict:
    """One RLOO update on N trajectories (groups of k); returns metrics. Stages:

    1. rows: (trajectory, turn) pairs of the trained turns (+ turn 1 when beta_1 > 0), R_i;
    2. log-probs: log pi_old (= log pi_theta detached: one epoch) and log pi_ref of the rows;
    3. scores s_i = R_i - beta KL(i) (sequence) or R_i (token), RLOO advantages A_i within groups;
    4. loss per micro-batch, (1/N)[sum_i policy_loss_i + beta_1 sum_i first_turn_kl_loss_i], backward;
    5. optimizer step: grad clipping (norm over the optimizer's tensors: the fp32 masters of
       optim.MasterWeightAdamW), optimizer and scheduler step (optim.optimizer_step).
    Fused path (`fused_chunks`): when whole groups fit in `micro_batch` rows, 2-4 share one forward
    per micro-batch (pi_old is that forward, detached); else 2-3 run first over all rows, no grad.
    ref_model: a frozen copy, or None to use `policy.reference()` (LoRA adapter disabled).
    Gradients stay in .grad after the step (the caller frees them with zero_grad).
    scaler: a torch.amp.GradScaler for fp16 weights (loss scaling; inf/nan steps are skipped: metrics
    `skipped` 1, `grad_norm` None (never Infinity in metrics.jsonl), `loss_scale` the scale the backward used).
    The "static" backend's KV caches (`Policy.decode_cache`) are released first: the next rollout allocates them
    again (one CUDA-graph recording per cache and update on a GPU, no recompile: `fastgen.cache_length` buckets).
    Dropout is off in pi_theta and pi_ref for the whole step (`modes.dropout_off`, as TRL's
    disable_dropout_in_model), so the no-grad pass, the grad pass and pi_ref are one network each.
    """
    groups = _group_matrix(trajectories)  # [G, k]; checked before any model work
    release_static_cache(policy)  # the "static" backend's KV caches are not needed through the backward: free them
    with mode(policy.model, True), dropout_off(policy.model, ref_model):
        return _rl_step(policy, ref_model, optimizer, scheduler, trajectories, groups, cfg, scaler)


def _rl_step(policy, ref_model, optimizer, scheduler, trajectories: Sequence[Trajectory], groups: torch.Tensor,
             cfg: RLConfig, scaler) -> dict:
    model, n = policy.model, len(trajectories)
    t0 = time.perf_counter()
    # 1. rows
    rows = select_rows(policy, trajectories, groups, cfg)                  # B rows, trained [B], R [N]
    batch, micro = rows.batch, cfg.micro_batch
    chunks = fused_chunks(rows.groups, len(rows.turns), micro)
    fused = chunks is not None
    parts: list[Scores] = []                                               # stage 3 of each micro-batch's groups
    if not fused:  # a group does not fit in a micro-batch: stages 2-3 first, every row, no grad
        old_all, ref_all = all_rows_logprobs(policy, ref_model, batch, cfg)                      # 2. [B, L-1]
        parts.append(score_groups(old_all, ref_all, batch, rows.trained, rows.R, rows.groups, cfg))  # 3.
        chunks = [(slice(a, a + micro), None) for a in range(0, batch.mask.shape[0], micro)]
    sec_lp = time.perf_counter() - t0
    optimizer.zero_grad(set_to_none=True)
    total_loss, clipped, clip_of, kl_t1 = 0.0, 0.0, 0, []
    for sl, g in chunks:
        mb = batch.rows(sl)
        logp = policy_logprobs(model, mb, cfg.temperature)                 # [b, Lm], with grad
        if fused:  # stages 2-3 for this micro-batch's whole groups g [Gc, k]
            t1 = time.perf_counter()
            old, ref = fused_logprobs(policy, ref_model, mb, logp, cfg)                          # 2.
            parts.append(score_groups(old, ref, mb, rows.trained[sl], rows.R, g, cfg))           # 3.
            sec_lp += time.perf_counter() - t1
        else:
            Lm = mb.mask.shape[1]
            old, ref = old_all[sl, :Lm], ref_all[sl, :Lm]
        adv = parts[-1].per_trajectory(n)[0][mb.traj]                      # [b] A_i of each row's trajectory
        # 4. loss of this micro-batch, backward
        loss, m = microbatch_loss(logp, old, ref, adv, mb.mask, rows.trained[sl], mb.turn, n, cfg)
        if loss.requires_grad:
            (scaler.scale(loss) if scaler is not None else loss).backward()
        total_loss += float(loss.detach())
        clipped += m["clipped"]
        clip_of += m["clip_of"]
        if cfg.first_turn_kl_coef > 0:
            first = mb.turn == 1
            kl_t1.append(row_kl(old, ref, mb.mask, first)[first])
    # 5. optimizer step (fp16: skipped by the scaler when the gradients overflowed; then grad_norm is None)
    step: dict = {}
    grad_norm = optimizer_step(optimizer, scheduler, scaler, cfg.max_grad_norm, stats=step)
    adv, kl, score = Scores.cat(parts).per_trajectory(n)                   # [N] each
    metrics = dict(loss=total_loss, kl=float(kl.mean()), score=float(score.mean()),
                   equal_groups=equal_group_share(rows.R[rows.groups]),
                   adv_mean=float(adv.mean()), adv_std=float(adv.std(correction=0)), adv_abs_max=float(adv.abs().max()),
                   grad_norm=grad_norm if math.isfinite(grad_norm) else None, clipfrac=clipped / max(clip_of, 1),
                   skipped=step["skipped"], loss_scale=step["loss_scale"],
                   tokens_trained=int((batch.mask * rows.trained[:, None]).sum()),
                   sec_logprobs=sec_lp, sec_backward=time.perf_counter() - t0 - sec_lp)
    if cfg.first_turn_kl_coef > 0:
        metrics["kl_t1"] = float(torch.cat(kl_t1).mean())
    return metrics
