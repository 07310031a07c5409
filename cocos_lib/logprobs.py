"""The rows of an RL update and their per-token log-probs (used by cocos_lib.rl).

A row is one turn of one trajectory: prompt_ids + completion_ids, right-padded into a `Batch`
whose `mask` marks the completion tokens, aligned with `token_logprobs` (position j holds
log pi(x_{j+1} | x_<=j)). Log-probs are those of the sampling distribution: logits / T.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch


# ------------------------------------------------------------------------------- log-probs

def _selective_log_softmax(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[index] row by row, never holding a second [B, L, V] tensor in fp32."""
    if logits.dtype in (torch.float32, torch.float64):
        picked = logits.gather(-1, index.unsqueeze(-1)).squeeze(-1)
        lse = torch.stack([torch.logsumexp(row, dim=-1) for row in logits])
        return picked - lse
    rows = [torch.log_softmax(row, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
            for row, ids in zip(logits, index)]
    return torch.stack(rows).float()


def token_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   start: int = 0, temperature: float = 1.0) -> torch.Tensor:
    """log pi(x_t | x_<t) for t = 1..L-1: [B, L-1] (position j holds the log-prob of x_{j+1}).

    Logits are computed only for positions >= start (logits_to_keep; prompt positions
    before it are filled with 0), divided by `temperature`, and log-softmaxed row by row.
    """
    L = input_ids.shape[1]
    keep = L - start  # logits for positions start..L-1; the last one predicts nothing
    try:
        logits = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=keep, use_cache=False).logits
    except TypeError:  # transformers < 4.48 or a model without logits_to_keep: full logits, then slice
        logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    logits = logits[:, -keep:-1]
    if temperature != 1.0:
        logits = logits / temperature
    lp = _selective_log_softmax(logits, input_ids[:, start + 1:])
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


def build_batch(trajectories: Sequence[Any], turns: Sequence[int], pad_id: int,
                device: str | torch.device = "cpu") -> Batch:
    """One row per (trajectory, turn in `turns`): prompt_ids + completion_ids, right-padded."""
    seqs, comp, tr, tu = [], [], [], []
    for i, traj in enumerate(trajectories):
        for t in sorted(turns):
            if t > len(traj.turns):
                raise ValueError(f"build_batch: trajectory {i} has {len(traj.turns)} turns, turn {t} requested")
            turn = traj.turns[t - 1]
            seqs.append(list(turn.prompt_ids) + list(turn.completion_ids))
            comp.append((len(turn.prompt_ids), len(turn.completion_ids)))
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


def logprobs_no_grad(model, batch: Batch, micro: int, temperature: float) -> torch.Tensor:
    """token_logprobs over all rows in micro-batches, no graph kept: [B, L-1] (0 outside completions)."""
    out = torch.zeros_like(batch.mask)
    with torch.no_grad():
        for a in range(0, batch.mask.shape[0], micro):
            mb = batch.rows(slice(a, a + micro))
            lp = token_logprobs(model, mb.input_ids, mb.attention_mask, mb.start(), temperature)
            out[a:a + micro, :lp.shape[1]] = lp.float() * mb.mask
    return out


def reference_logprobs(policy, ref_model, batch: Batch, micro: int, temperature: float) -> torch.Tensor:
    """log pi_ref on the batch, no grad: `ref_model`, or the policy with its LoRA adapter disabled."""
    if ref_model is None:
        with policy.reference():
            return logprobs_no_grad(policy.model, batch, micro, temperature)
    return logprobs_no_grad(ref_model, batch, micro, temperature)
