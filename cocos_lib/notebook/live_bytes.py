"""Live tensor memory of a block of code, measured on any device (the CPU included), exactly and deterministically:

    with LiveBytes() as live:
        loss.backward()
    live.peak          # the most bytes of tensor storage alive at once that the block created

A TorchDispatchMode sees every tensor an operator returns (autograd's backward included: it runs on this thread);
each new storage adds its bytes and a weakref finalizer takes them off when it is freed. This is the quantity
CUDA's `torch.cuda.max_memory_allocated()` tracks, without the caching allocator's rounding (512-byte blocks) and
without storages created outside the block (weights, optimizer state made before). It is what
`memory.estimate`'s formulas are tested against on small shapes (tests/test_memory.py).
Limits: tensors made by code that bypasses the dispatcher (none in torch's ops or transformers) are not seen;
a storage is counted at its full size when it is created, touched or not.
"""
from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class LiveBytes(TorchDispatchMode):
    """Bytes of tensor storage created in the block and still alive (`now`), and the most at once (`peak`)."""

    def __init__(self):
        super().__init__()
        self.now = 0
        self.peak = 0
        self._seen: set[int] = set()

    def _free(self, key: int, nbytes: int) -> None:
        self._seen.discard(key)
        self.now -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                storage = t.untyped_storage()
                key = id(storage)
                if key not in self._seen and storage.nbytes() > 0:
                    self._seen.add(key)
                    self.now += storage.nbytes()
                    self.peak = max(self.peak, self.now)
                    weakref.finalize(storage, self._free, key, storage.nbytes())
        return out
