"""The rows of an RL update and their per-token log-probs (used by cocos_lib.rl).

A row is one turn of one trajectory: prompt_ids + completion_ids, right-padded into a `Batch`
whose `mask` marks the completion tokens, aligned with `token_logprobs` (position j holds
log pi(x_{j+1} | x_<=j)). Log-probs are those of the sampling distribution: logits / T.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from cocos_lib.trajectory import Trajectory


# ------------------------------------------------------------------------------- log-probs

class _LogSoftmaxPick(torch.autograd.Function):
    """log softmax(z / T)[y] in fp32 for logits z of any dtype, one row at a time.

    Forward: per row, u = float(z) / T, lse = logsumexp(u), u_y - lse; only the logits (kept
    anyway) and lse [B, L] are saved. Backward: d/dz_v = (g / T) (1{v = y} - softmax(u)_v),
    recomputed in fp32 per row and cast back to z's dtype. So no [B, L, V] fp32 tensor exists
    at any time, only one row's [L, V]. In bf16 (8 bits of mantissa) z / T and log_softmax would
    each round: up to ~0.06 nats per token, summed over up to 512 tokens into rho and the KL."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, index: torch.Tensor, temperature: float) -> torch.Tensor:
        dt = torch.promote_types(logits.dtype, torch.float32)                           # fp32 (fp64 stays)
        lse = torch.stack([torch.logsumexp(row.to(dt) / temperature, dim=-1) for row in logits])  # [B, L]
        picked = logits.gather(-1, index.unsqueeze(-1)).squeeze(-1).to(dt) / temperature  # [B, L]
        ctx.save_for_backward(logits, index, lse)
        ctx.temperature = temperature
        return picked - lse

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        logits, index, lse = ctx.saved_tensors
        T = ctx.temperature
        out = torch.empty_like(logits)
        for r in range(logits.shape[0]):
            g = grad[r].to(lse.dtype).unsqueeze(-1) / T                                  # [L, 1]
            d = -g * torch.exp(logits[r].to(lse.dtype) / T - lse[r].unsqueeze(-1))       # [L, V]
            d.scatter_add_(-1, index[r].unsqueeze(-1), g)
            out[r] = d.to(logits.dtype)
        return out, None, None


def _selective_log_softmax(logits: torch.Tensor, index: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(logits / T)[index] in fp32 (fp64 stays fp64): [B, L, V], [B, L] -> [B, L]."""
    return _LogSoftmaxPick.apply(logits, index, float(temperature))


def _top_k_log_softmax(logits: torch.Tensor, index: torch.Tensor, temperature: float, k: int) -> torch.Tensor:
    """log of the top-k-renormalised softmax(logits / T) at index, fp32, no grad: [B, L, V] -> [B, L].

    What the release's old log-probs are (generate's processed scores, temperature then HF's
    top-k warper): the tokens whose u = z / T is below the k-th largest u are dropped (ties kept,
    as HF's TopKLogitsWarper), the rest renormalised. A token outside the top k (pi_theta's forward
    may rank it lower than the sampling pass did) keeps u_y - lse_k instead of the release's -inf."""
    out = []
    with torch.no_grad():
        for row, ids in zip(logits, index):
            u = row.float() / temperature                                           # [L, V]
            kth = torch.topk(u, min(k, u.shape[-1]), dim=-1).values[:, -1:]         # [L, 1]
            lse = torch.logsumexp(u.masked_fill(u < kth, float("-inf")), dim=-1)    # [L]
            out.append(u.gather(-1, ids.unsqueeze(-1)).squeeze(-1) - lse)
    return torch.stack(out)


def token_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   start: int = 0, temperature: float = 1.0, top_k: int = 0) -> torch.Tensor:
    """log pi(x_t | x_<t) for t = 1..L-1: [B, L-1] (position j holds the log-prob of x_{j+1}).

    Logits are computed only for positions >= start (logits_to_keep; prompt positions
    before it are filled with 0), divided by `temperature` and log-softmaxed in fp32 row by row
    (whatever the model's dtype; see _LogSoftmaxPick). top_k > 0: the top-k-renormalised
    distribution instead, without gradient (the release's pi_old, see _top_k_log_softmax).
    """
    L = input_ids.shape[1]
    keep = L - start  # logits for positions start..L-1; the last one predicts nothing
    try:
        logits = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=keep, use_cache=False).logits
    except TypeError:  # transformers < 4.48 or a model without logits_to_keep: full logits, then slice
        logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    logits = logits[:, -keep:-1]                                           # [B, L-1-start, V]
    targets = input_ids[:, start + 1:]                                     # [B, L-1-start]
    if top_k:
        lp = _top_k_log_softmax(logits, targets, temperature, top_k)
    else:
        lp = _selective_log_softmax(logits, targets, temperature)           # [B, L-1-start], fp32
    if start > 0:
        lp = torch.cat([lp.new_zeros(lp.shape[0], start), lp], dim=1)
    return lp


# ------------------------------------------------------------------------------- batches

@dataclass
class Batch:
    """Rows = (trajectory, turn) pairs, right-padded: input_ids [B, L], attention_mask [B, L],
    mask [B, L-1] (1 on completion tokens, aligned with token_logprobs), traj [B], turn [B]."""
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    mask: torch.Tensor
    traj: torch.Tensor
    turn: torch.Tensor

    def rows(self, idx: slice) -> "Batch":
        """A micro-batch, trimmed to its own longest row."""
        am = self.attention_mask[idx]
        L = max(int(am.sum(1).max()), 2)
        return Batch(self.input_ids[idx, :L], am[:, :L], self.mask[idx, :L - 1], self.traj[idx], self.turn[idx])

    def start(self) -> int:
        """First position whose logits are needed (the token before the earliest completion token)."""
        nz = self.mask.any(0).nonzero()
        return int(nz[0]) if len(nz) else self.mask.shape[1] - 1


def build_batch(trajectories: Sequence[Trajectory], turns: Sequence[int], pad_id: int,
                device: str | torch.device = "cpu", mask_from_pad: bool = False) -> Batch:
    """One row per (trajectory, turn in `turns`): prompt_ids + completion_ids, right-padded.

    mask_from_pad (the release's TRL RLOO padding_mask, for rows that ran past EOS): a completion
    is cut before its first `pad_id` token, which is dropped with everything after it (no
    log-prob, KL or gradient; the tokens kept do not see them). Without it every completion
    token counts, a final EOS included."""
    seqs, comp, tr, tu = [], [], [], []
    for i, traj in enumerate(trajectories):
        for t in sorted(turns):
            if t > len(traj.turns):
                raise ValueError(f"build_batch: trajectory {i} has {len(traj.turns)} turns, turn {t} requested")
            turn = traj.turns[t - 1]
            completion = list(turn.completion_ids)
            if mask_from_pad and pad_id in completion:
                completion = completion[:completion.index(pad_id)]
            seqs.append(list(turn.prompt_ids) + completion)
            comp.append((len(turn.prompt_ids), len(completion)))
            tr.append(i)
            tu.append(t)
    L = max(max(len(s) for s in seqs), 2)
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    am = torch.zeros((len(seqs), L), dtype=torch.long)
    mask = torch.zeros((len(seqs), L - 1))
    for r, (s, (p, c)) in enumerate(zip(seqs, comp)):
        ids[r, :len(s)] = torch.tensor(s, dtype=torch.long)
        am[r, :len(s)] = 1
        mask[r, max(p - 1, 0):p - 1 + c] = 1.0  # position j predicts token j+1
    dev = torch.device(device)
    return Batch(ids.to(dev), am.to(dev), mask.to(dev), torch.tensor(tr, device=dev), torch.tensor(tu, device=dev))


def logprobs_no_grad(model, batch: Batch, micro: int, temperature: float, top_k: int = 0) -> torch.Tensor:
    """token_logprobs over all rows in micro-batches, no graph kept: [B, L-1] (0 outside completions)."""
    out = torch.zeros_like(batch.mask)
    with torch.no_grad():
        for a in range(0, batch.mask.shape[0], micro):
            mb = batch.rows(slice(a, a + micro))
            lp = token_logprobs(model, mb.input_ids, mb.attention_mask, mb.start(), temperature, top_k)
            out[a:a + micro, :lp.shape[1]] = lp.float() * mb.mask
    return out


def sequence_logprobs(model, batch: Batch, micro: int = 8, temperature: float = 1.0) -> torch.Tensor:
    """log pi(y | x) = sum_t mask_t log pi(y_t | x, y_<t) per row, no grad: [B], the log-probability
    of each row's whole completion under `model` (at `temperature`)."""
    return (logprobs_no_grad(model, batch, micro, temperature) * batch.mask).sum(-1)


def reference_logprobs(policy, ref_model, batch: Batch, micro: int, temperature: float) -> torch.Tensor:
    """log pi_ref on the batch, no grad: `ref_model`, or the policy with its LoRA adapter disabled."""
    if ref_model is None:
        with policy.reference():
            return logprobs_no_grad(policy.model, batch, micro, temperature)
    return logprobs_no_grad(ref_model, batch, micro, temperature)
