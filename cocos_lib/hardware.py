"""The machine code runs on, and the one precision decision for it (stdlib only at import: a leaf module).

Hardware: device, name, CUDA compute capability and total memory (`detect`; tests pass a fake).
Precision: bf16 needs compute capability >= 8.0. `torch.cuda.is_bf16_supported()` says True on a T4
(7.5) because it counts emulation (slow matmuls, the math attention kernel; vLLM refuses bf16 there),
so the one decision is `precision(detect())`, from the capability; `models.resolve_dtype("auto")`,
`config.TrainConfig.validate` and the vLLM backend ask it. A T4 therefore runs in fp16: fp16 frozen
weights, fp32 LoRA adapters and loss scaling (torch.amp.GradScaler in cocos_lib/train.py), with
PyTorch's sdpa attention (transformers' default; nothing here asks for FlashAttention-2, which a T4
does not support).
"""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from dataclasses import dataclass

GiB = 1024 ** 3


@dataclass(frozen=True)
class Hardware:
    """Where the kernel runs."""
    device: str                              # "cuda" | "cpu"
    name: str = "cpu"                        # e.g. "Tesla T4"
    capability: tuple[int, int] | None = None  # CUDA compute capability, (7, 5) on a T4
    memory_gib: float | None = None          # total GPU memory
    colab: bool = False                      # inside Google Colab

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    @property
    def bf16(self) -> bool:
        return self.cuda and self.capability is not None and self.capability >= (8, 0)

    def describe(self) -> str:
        if not self.cuda:
            return "no CUDA GPU (CPU only)"
        major, minor = self.capability or (0, 0)
        return f"CUDA GPU {self.name} (compute {major}.{minor}, {self.memory_gib:.1f} GiB)"


def detect(torch_module=None, index: int = 0) -> Hardware:
    """CUDA device `index` if there is a CUDA GPU, else the CPU (`torch_module`: a stand-in for tests)."""
    torch = torch_module if torch_module is not None else importlib.import_module("torch")
    colab = "google.colab" in sys.modules
    if not torch.cuda.is_available():
        return Hardware("cpu", colab=colab)
    props = torch.cuda.get_device_properties(index)
    return Hardware("cuda", props.name, (props.major, props.minor), props.total_memory / GiB, colab)


@dataclass(frozen=True)
class Precision:
    """How a GPU profile computes on this hardware."""
    dtype: str          # weights' compute dtype: "bf16" | "fp16" | "fp32"
    loss_scaling: bool  # fp16 gradients need a GradScaler
    attention: str      # attention kernel: "sdpa" (PyTorch's; never FlashAttention-2 here)

    def describe(self) -> str:
        scaling = " + loss scaling" if self.loss_scaling else ""
        return f"{self.dtype} weights{scaling}, {self.attention} attention"


def precision(hw: Hardware) -> Precision:
    """bf16 where supported natively (compute >= 8.0), fp16 with loss scaling before that (T4, V100), fp32 on CPU.
    The one precision decision for a CUDA device: `models.resolve_dtype("auto")` and the vLLM engine use it."""
    if not hw.cuda:
        return Precision("fp32", False, "sdpa")
    return Precision("bf16", False, "sdpa") if hw.bf16 else Precision("fp16", True, "sdpa")


CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of a CPU with native bf16 matmuls


def cpu_bf16_flags(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> tuple[str, ...]:
    """The CPU_BF16_FLAGS this CPU has (read from `cpuinfo`; empty where the file is absent, e.g. macOS).

    With AMX-BF16 (Sapphire Rapids on) or AVX512-BF16 (Cooper Lake, Zen 4) a bf16 matmul runs several
    times faster than fp32 (on this repo's 2-core AMX machine about 5-8x); without them PyTorch emulates
    bf16 on the CPU and it is slower than fp32."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return ()
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return tuple(f for f in CPU_BF16_FLAGS if f in flags)
