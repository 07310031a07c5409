"""The machine a notebook runs on, and the profile that fits it.

    PROFILE = choose_profile(PROFILE)   # None: "colab" on a CUDA GPU, "tiny" on a CPU; one line says which

Hardware and precision: `cocos_lib.hardware` (`detect`, `precision`: the one precision decision; a T4 runs
the `colab` profile in fp16 with loss scaling).
Memory: a GPU profile's peak from `memory.plan` (an estimate from the model's shapes, not a
measurement) against the GPU's total memory; a profile that does not fit is said so before any
model is loaded.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from cocos_lib.hardware import Hardware, detect, precision
from cocos_lib.notebook import memory
from cocos_lib.notebook.profile import NOTEBOOK_PROFILES, ProfileError

HEADROOM = 0.95   # share of a GPU's total memory a plan may use (the driver and allocator keep the rest)


def profile_names() -> tuple[str, ...]:
    return tuple(NOTEBOOK_PROFILES)


def gpu_profiles() -> tuple[str, ...]:
    """Profiles that have a GPU memory plan (memory.PLANS): they expect a CUDA device."""
    return tuple(p for p in profile_names() if p in memory.PLANS)


@dataclass(frozen=True)
class Fit:
    """A GPU profile's estimated peak against the GPU's memory."""
    profile: str
    model: str
    peak_gib: float
    gpu_gib: float

    @property
    def fits(self) -> bool:
        return self.peak_gib <= HEADROOM * self.gpu_gib

    def describe(self) -> str:
        if self.fits:
            return (f"memory: profile {self.profile!r} ({self.model}) peaks at ~{self.peak_gib:.1f} GiB of this GPU's "
                    f"{self.gpu_gib:.1f} GiB (estimated from the model's shapes, cocos_lib/notebook/memory.py)")
        return (f"warning: profile {self.profile!r} ({self.model}) needs ~{self.peak_gib:.1f} GiB at its peak "
                f"(memory.plan estimate), more than {HEADROOM:.0%} of this GPU's {self.gpu_gib:.1f} GiB: expect "
                "out-of-memory; pick a smaller profile (PROFILE='colab') or a larger GPU")


def memory_fit(profile: str, hw: Hardware, plan_fn: Callable[[str], dict] | None = None) -> Fit | None:
    """The Fit of a GPU profile on this GPU; None on a CPU or for a profile without a plan."""
    if not hw.cuda or profile not in gpu_profiles():
        return None
    if plan_fn is None:
        plan_fn = memory.plan
    est = plan_fn(profile)
    return Fit(profile, est["model"], float(est["peak"]), float(hw.memory_gib))


def choose_profile(requested: str | None = None, hw: Hardware | None = None, out: Callable[[str], None] = print,
                   plan_fn: Callable[[str], dict] | None = None) -> str:
    """The profile to run: `requested`, or (None) "colab" on a CUDA GPU and "tiny" on a CPU.
    Prints one line saying which and why, plus a memory line for a GPU profile on a GPU and a
    warning when a GPU profile runs without one."""
    names = profile_names()
    if requested is not None and requested not in names:
        raise ProfileError(f"PROFILE={requested!r}: expected None (auto) or one of {', '.join(names)}")
    hw = hw if hw is not None else detect()
    if requested is None:
        name = "colab" if hw.cuda else "tiny"
        if hw.cuda:
            out(f"PROFILE=None -> 'colab': {hw.describe()}; {precision(hw).describe()} (set PROFILE to choose)")
        elif hw.colab:
            out("PROFILE=None -> 'tiny': no CUDA GPU in this runtime (for the 'colab' profile: Runtime > Change "
                "runtime type > T4 GPU, then run again)")
        else:
            out("PROFILE=None -> 'tiny': no CUDA GPU here, the CPU toy world (set PROFILE to choose)")
    else:
        name = requested
        out(f"PROFILE={name!r}: {hw.describe()}" + (f"; {precision(hw).describe()}" if hw.cuda else ""))
    if name in gpu_profiles() and not hw.cuda:
        out(f"warning: profile {name!r} expects a CUDA GPU and there is none: it will run on the CPU, very slowly")
    fit = memory_fit(name, hw, plan_fn)
    if fit is not None:
        out(fit.describe())
    return name
