"""Giving back a finished model's memory (notebook 03 frees its walkthrough models before training its own).

`del policy` frees nothing while one reference is left (another name, IPython's output history, an exception's
traceback, MasterWeightAdamW's gradient hooks holding its fp32 masters): `free_models` empties the objects
themselves, so their memory returns whoever still refers to them.
"""
from __future__ import annotations

import gc
from typing import Any, Sequence

import torch


def free_models(*models, optimizers: Sequence[Any] = ()) -> None:
    """Give back the memory of finished models (Policy objects or modules, e.g. pi_theta and a frozen pi_ref) and
    their optimizers, also while other names, hooks or IPython's output history still refer to them: `del` alone
    frees nothing while one reference is left, and MasterWeightAdamW's gradient hooks hold its fp32 masters.
    Per optimizer: hooks removed (`remove_hooks`), state and parameter lists emptied. Per model: gradients dropped,
    the fast backends' caches released (Policy.decode_cache), parameters and buffers moved to the meta device (no
    storage). Then gc.collect() and, on CUDA, torch.cuda.empty_cache() so the card's memory is free for the next
    model. The models cannot be used afterwards."""
    for opt in optimizers:
        if hasattr(opt, "remove_hooks"):
            opt.remove_hooks()
        opt.state.clear()
        for group in opt.param_groups:
            group["params"] = []
        if hasattr(opt, "pairs"):
            opt.pairs = []
    for m in models:
        if m is None:
            continue
        cache = getattr(m, "decode_cache", None)
        if cache is not None:
            cache.release_static()
            cache.vllm_engine = None
        module = m if isinstance(m, torch.nn.Module) else m.model
        module.zero_grad(set_to_none=True)
        module.to("meta")
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
