"""The optimizer of a run: AdamW, with fp32 master weights when the trainable weights are bf16/fp16.

Why master weights: AdamW moves each weight by about lr per step (1e-5 in the paper profile).
A bf16 weight has 8 bits of mantissa, so near 1.0 (norm weights) its spacing is 2^-7 = 0.0078
and near 0.02 (a typical N(0, 0.02) weight) it is ~1e-4: most updates round back to the same
bf16 value. Measured on 1M weights, 10 steps at lr 1e-5 changed 15% of the N(0, 0.02) weights
and none of the weights near 1.0 (fp32: ~100%). fp16 has the same problem (config.py refuses
fp16 full fine-tuning).

How (`MasterWeightAdamW`): the model keeps its bf16 weights w; the optimizer holds an fp32
master w32 of each, runs AdamW on w32 (its m and v are fp32 too) and writes w = bf16(w32) after
each step, so updates accumulate in w32 until they move w. Gradients are accumulated in fp32
on the masters: a post-accumulate-grad hook adds each backward's bf16 .grad into w32.grad and
frees it. This is sound numerics, and it is what DeepSpeed ZeRO does (bf16 model, fp32 partitions); whether
the release trained so is uncertain. Its README launches `deepspeed train.py --deepspeed CONFIG`, but the
trainer builds a bare `Accelerator()` (no DeepSpeed plugin) and `--deepspeed` only reaches argparse, so as
launched it most likely ran torch AdamW directly on the bf16 weights (no fp32 masters: the rounding above
applies; at lr 1e-5 many updates of weights near 1.0 are lost). Unless DeepSpeed was configured another way
(an `accelerate config` file), which the release does not show. We keep fp32 masters (docs/paper.md §10).
The alternative, fp32 parameters with bf16 autocast, was not chosen: generation and the forward
would recast every weight on each call (or cache a bf16 copy, the same memory), HF's RMSNorm and
rotary code would promote the residual stream and K to fp32 (more activation and KV-cache
memory), and the fast "static" / vLLM backends expect the model's own dtype. Here generation,
the forward and the frozen reference copy (deep-copied from the bf16 model) stay bf16.
Memory per trainable parameter: 2 (bf16 w) + 4 (w32) + 8 (Adam m, v) + 4 (fp32 grads) = 18 bytes,
vs 2 + 4 + 2 = 8 without masters (cocos_lib/notebook/memory.py, `master_fp32`). Checkpoints save w32 with
the optimizer state (exact resume); the saved model is bf16(w32).

Parameters that already are fp32 (the tiny profile, LoRA adapters, which peft keeps in fp32)
are optimized as they are, with plain AdamW: nothing changes for them.
"""
from __future__ import annotations

import functools
import math
from typing import Iterable

import torch

LOW_PRECISION = (torch.bfloat16, torch.float16)


def _accumulate_into(master: torch.Tensor, param: torch.Tensor) -> None:
    """Post-accumulate-grad hook: master.grad += float(param.grad); param.grad = None."""
    if master.grad is None:
        master.grad = param.grad.to(master.dtype)
    else:
        master.grad.add_(param.grad)
    param.grad = None


class MasterWeightAdamW(torch.optim.AdamW):
    """AdamW on fp32 masters of the low-precision parameters (module docstring); fp32 ones are
    used directly. param_groups hold the masters, so clip their .grad (see `trainable`); the
    model's low-precision parameters never keep a .grad. state_dict() adds the masters.
    One at a time per model: its hooks move the model's gradients into its masters
    (`remove_hooks()` before building another on the same model)."""

    def __init__(self, params: Iterable[torch.nn.Parameter], **adamw_kwargs):
        self.pairs: list[tuple[torch.nn.Parameter, torch.Tensor]] = []  # (low-precision w, w32)
        self.hooks = []
        masters = []
        for p in params:
            if p.dtype in LOW_PRECISION:
                w32 = p.detach().float().clone().requires_grad_(True)
                self.hooks.append(p.register_post_accumulate_grad_hook(functools.partial(_accumulate_into, w32)))
                self.pairs.append((p, w32))
                masters.append(w32)
            else:
                masters.append(p)
        super().__init__(masters, **adamw_kwargs)

    def remove_hooks(self) -> None:
        for h in self.hooks:
            h.remove()
        self.hooks = []

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        for p, w32 in self.pairs:
            p.copy_(w32)  # round to the model's dtype
        return loss

    def state_dict(self) -> dict:
        sd = super().state_dict()
        sd["master_weights"] = [w32 for _, w32 in self.pairs]
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        masters = state_dict.pop("master_weights", None)
        super().load_state_dict(state_dict)
        if masters is not None:
            with torch.no_grad():
                for (p, w32), saved in zip(self.pairs, masters):
                    w32.copy_(saved)
                    p.copy_(w32)


def adamw_kwargs(params) -> dict:
    """fused=True when every parameter is on CUDA: one kernel per step, where the default foreach implementation
    allocates a temporary as large as all the (fp32) states at once (5.75 GiB for Qwen2.5-1.5B's masters;
    memory.estimate's optimizer_temp). The CPU keeps torch's default (the numbers of the CPU runs stay as they are)."""
    params = list(params)
    return {"fused": True} if params and all(p.device.type == "cuda" for p in params) else {}


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters; MasterWeightAdamW when any of them is bf16/fp16; fused on CUDA."""
    params = [p for p in model.parameters() if p.requires_grad]
    if any(p.dtype in LOW_PRECISION for p in params):
        return MasterWeightAdamW(params, lr=lr, weight_decay=weight_decay, **adamw_kwargs(params))
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **adamw_kwargs(params))


def trainable(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The tensors the optimizer updates (fp32 masters where it keeps them): clip their .grad."""
    return [p for group in optimizer.param_groups for p in group["params"]]



def optimizer_step(optimizer: torch.optim.Optimizer, scheduler=None, scaler=None,
                   max_norm: float | None = None, stats: dict | None = None) -> float:
    """One step on the accumulated gradients: unscale (fp16 loss scaling), clip the norm over the
    optimizer's tensors (`trainable`: the fp32 masters where it keeps them; None = no clipping),
    optimizer step, scheduler step. Returns the norm before clipping (inf or nan when the gradients overflowed).
    With a scaler (torch.amp.GradScaler), a step whose gradients hold inf/nan is skipped by the scaler, which
    halves its scale: the scheduler then does not advance either (the lr schedule counts applied steps).
    stats (optional, filled): skipped (0 or 1) and loss_scale (the scale the backward used; None without scaler)."""
    scale = float(scaler.get_scale()) if scaler is not None else None
    if scaler is not None:
        scaler.unscale_(optimizer)
    limit = max_norm if max_norm is not None else math.inf
    grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable(optimizer), limit))
    skipped = False
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
        skipped = float(scaler.get_scale()) < scale      # the scaler backs off exactly when it skipped the step
    else:
        optimizer.step()
    if scheduler is not None and not skipped:
        scheduler.step()
    if stats is not None:
        stats.update(skipped=int(skipped), loss_scale=scale)
    return grad_norm


class TrainingDiverged(RuntimeError):
    """fp16 training cannot go on: the loss scale collapsed, or the forward overflowed (one-line message)."""


class GuardedGradScaler(torch.amp.GradScaler):
    """torch.amp.GradScaler that stops the run after `limit` skipped steps in a row (the caller holds the count).

    GradScaler halves its scale at each skip. A few skips at the start are normal (the initial scale 2^16 is
    too high for most models); `limit` in a row (default 12: the scale fell 4096-fold) means the gradients
    overflow whatever the scale, i.e. the fp16 forward itself does: nothing is learning, so stop in one line."""

    def __init__(self, device: str = "cuda", limit: int = 12, **kwargs):
        super().__init__(device, **kwargs)
        self.limit = limit
        self.skips_in_a_row = 0

    def update(self, new_scale=None) -> None:
        before = float(self.get_scale())
        super().update(new_scale)
        skipped = float(self.get_scale()) < before
        self.skips_in_a_row = self.skips_in_a_row + 1 if skipped else 0
        if self.skips_in_a_row >= self.limit:
            raise TrainingDiverged(f"fp16 loss scaling skipped {self.skips_in_a_row} steps in a row (loss scale now "
                                   f"{float(self.get_scale()):g}): the gradients overflow at any scale; use dtype bf16 "
                                   "(compute >= 8.0) or fp32")
