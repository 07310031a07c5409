"""How long a notebook's long cells will take, printed before they run: measured on CPU, estimated on GPUs.

CPU, `tiny` profile: MEASURED_CPU holds what one cell of an earlier committed notebook run took
(papermill's cell duration, the repo's 2-core machine) and how much work that cell did. An estimate
says "measured" only for exactly that work (the same cell at the same sizes); any other size or kind
of work (sampled rollouts from a greedy evaluation's rate, a shorter training run) is "scaled" from it.

GPUs: nothing here was measured on the card itself, so every GPU number says "estimated".
  A decode step of HF `generate` for model M at batch B and context C takes
      step_s = fixed_s(M) + bytes(M, B, C) / bandwidth,  bytes = 2 x params + KV cache (memory.py)
  calibrated on one measurement, REFERENCE: HF generate of Qwen2.5-1.5B on an H100, batch 128,
  300-token prompts, 512 new tokens, ~1,600 new tokens/s = 80 ms a step, of which only ~1.5 ms is
  memory traffic at 3.35 TB/s. The rest (kernel launches, Python) is a per-layer cost assumed equal
  on every GPU; the traffic term scales with the card's bandwidth (GPUS, spec sheets). Scaling the
  whole step by bandwidth instead would make a T4 10x slower than this model says.
  A batch runs until its longest row stops: with a [DONE] stop, the longest of B completions of an
  ASSUMED lognormal length (median 70 tokens, sigma 0.5, as benchmarks/rollout_bench.py assumes);
  with EOS only (the release's evaluation: base models rarely write EOS), max_new_tokens.
  Prompts (PROMPT_TOKENS) are ASSUMED sizes for MBPP with a Qwen-like tokenizer until measured
  token counts are committed. Prefill and training are compute: FLOPs / (fp16 peak x UTILISATION).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from statistics import NormalDist

from cocos_lib.notebook import memory
from cocos_lib.release.authors import PAIRS

# An earlier committed tiny run (notebooks/*.ipynb, metadata.papermill.duration of the named cells):
# name -> (seconds the cell took, units of work it did). A re-run moves the seconds by tens of percent.
MEASURED_CELLS = {
    "eval": (30.3, 200 * 4),          # 01 §1: simple prompting, 200 toy tasks x 4 turns, greedy (task-turns)
    "self_refine": (24.5, 200),       # 01 §2: Self-Refine, 200 tasks (answer, critique, rewrite)
    "train": (249.6, 40 * 16 * 4),    # 03 §3: 40 updates x 16 prompts x k = 4 (rollouts)
}
MEASURED_CPU = {                      # seconds per unit of work
    "eval_s_per_task_turn": MEASURED_CELLS["eval"][0] / MEASURED_CELLS["eval"][1],
    "self_refine_s_per_task": MEASURED_CELLS["self_refine"][0] / MEASURED_CELLS["self_refine"][1],
    "train_s_per_rollout": MEASURED_CELLS["train"][0] / MEASURED_CELLS["train"][1],
}


@dataclass(frozen=True)
class Gpu:
    name: str
    bandwidth_gbs: float   # memory bandwidth, GB/s (spec sheet)
    fp16_tflops: float     # dense fp16 tensor-core peak, TFLOPS (spec sheet)


GPUS = {"T4": Gpu("T4", 320, 65), "L4": Gpu("L4", 300, 121), "V100": Gpu("V100", 900, 125),
        "A100": Gpu("A100", 1555, 312), "H100": Gpu("H100", 3350, 989), "H200": Gpu("H200", 4800, 989)}
REFERENCE = dict(gpu="H100", model="Qwen/Qwen2.5-1.5B", batch=128, prompt=300, new=512, tokens_per_s=1600.0)
UTILISATION = 0.3               # ASSUMED share of the fp16 peak reached by prefill and training
TRAIN_FLOPS_PER_TOKEN = 12      # x params: policy + reference log-probs (2 + 2), forward + backward (6), recompute (2)
COMPLETION = dict(median=70, sigma=0.5)   # ASSUMED completion length that ends at [DONE], tokens
PROMPT_TOKENS = dict(task=130, fewshot=420, turn2=280)  # ASSUMED: MBPP header, a 3-shot block, a turn-2 prompt
CHECKPOINT_ARCH = {p.checkpoint: p.base for p in PAIRS}   # a released checkpoint has its base model's shapes


@dataclass(frozen=True)
class Estimate:
    """One long step: what, how long, measured or estimated, and the numbers behind it."""
    what: str
    seconds: float
    basis: str      # "measured" (that very cell, earlier run) | "scaled" (from one) | "estimated" (GPU model)
    detail: str

    def line(self) -> str:
        return f"{self.what}: ~{duration(self.seconds)} ({self.basis}; {self.detail})"


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def gpu_for(name: str | None) -> Gpu:
    """The GPUS entry whose key is in the device name ("Tesla T4" -> T4); a T4 when unknown."""
    up = (name or "").upper()
    return next((g for key, g in GPUS.items() if key in up), GPUS["T4"])


@functools.lru_cache(maxsize=None)
def shape(model: str):
    """memory.Shape of a model (released checkpoints share their base's), or None when unknown."""
    arch = CHECKPOINT_ARCH.get(model, model)
    return memory.Shape.from_config(memory.arch_config(arch)) if arch in memory.ARCHS else None


def _traffic(s, batch: int, context: float) -> float:
    return 2 * s.params + memory.kv_cache_bytes(s, batch, int(context), "fp16")


@functools.lru_cache(maxsize=None)
def fixed_s_per_layer() -> float:
    """The reference step's time beyond its memory traffic, per layer (see the module docstring)."""
    ref, s = REFERENCE, shape(REFERENCE["model"])
    step = ref["batch"] / ref["tokens_per_s"]
    traffic = _traffic(s, ref["batch"], ref["prompt"] + ref["new"] / 2) / (GPUS[ref["gpu"]].bandwidth_gbs * 1e9)
    return (step - traffic) / s.layers


def step_s(s, gpu: Gpu, batch: int, context: float) -> float:
    """Seconds of one decode step (ESTIMATED)."""
    return fixed_s_per_layer() * s.layers + _traffic(s, batch, context) / (gpu.bandwidth_gbs * 1e9)


def batch_steps(batch: int, max_new: int, stop: bool) -> int:
    """Decode steps a batch runs: its longest row (stop at [DONE]) or max_new (no stop)."""
    if not stop:
        return max_new
    z = NormalDist().inv_cdf(1 - 1 / (batch + 1))
    return min(max_new, round(COMPLETION["median"] * math.exp(COMPLETION["sigma"] * z)))


def generation_s(s, gpu: Gpu, rows: int, batch: int, prompt: int, max_new: int, stop: bool) -> tuple[float, int]:
    """(seconds, decode steps) to generate for `rows` prompts in batches of `batch` (ESTIMATED)."""
    if rows == 0:
        return 0.0, 0
    b = min(batch, rows)
    steps = batch_steps(b, max_new, stop)
    prefill = 2 * s.params * b * prompt / (gpu.fp16_tflops * 1e12 * UTILISATION)
    batches = math.ceil(rows / b)
    return batches * (prefill + steps * step_s(s, gpu, b, prompt + steps / 2)), batches * steps


def _gpu_detail(gpu: Gpu, steps: int, s, batch: int) -> str:
    ms = 1000 * step_s(s, gpu, batch, PROMPT_TOKENS["turn2"])
    return f"{gpu.name}: {steps:,} decode steps of ~{ms:.0f} ms at batch {batch}"


# ------------------------------------------------------------------ per notebook cell

def evaluation(P, n_tasks: int, turns: int, method: str = "cocos", gpu: Gpu | None = None,
               label: str = "evaluation", greedy: bool = True) -> Estimate | None:
    """Greedy evaluation of n_tasks tasks for `turns` turns (Self-Refine: answer, critique, rewrite);
    greedy=False: sampled rollouts, whose CPU time is scaled from the greedy evaluation's rate."""
    what = f"{label}, {n_tasks} tasks x {turns} turns"
    if P.name == "tiny" and method == "self-refine":
        return _measured(what, "self_refine", n_tasks * turns / 2)
    if P.name == "tiny":
        return _measured(what, "eval", n_tasks * turns, same_kind=greedy)
    s = shape(P.model)
    if s is None or gpu is None:
        return None
    calls = 2 * turns - 1 if method == "self-refine" else turns
    sec, steps = generation_s(s, gpu, n_tasks, P.batch_size, PROMPT_TOKENS["turn2"], P.max_new_tokens, True)
    return Estimate(what, sec * calls, "estimated", _gpu_detail(gpu, steps * calls, s, P.batch_size))


def _measured(what: str, cell: str, units: float, same_kind: bool = True) -> Estimate:
    """A CPU estimate from MEASURED_CELLS[cell]: "measured" when it is that cell's very work (same kind, same
    units), else "scaled" from it, saying from what."""
    seconds, done = MEASURED_CELLS[cell]
    if same_kind and units == done:
        return Estimate(what, seconds, "measured", "this cell in an earlier committed tiny run, 2-core CPU")
    return Estimate(what, seconds * units / done, "scaled",
                    f"from a measured {seconds:.0f} s for {done:,} {UNIT_NAMES[cell]}, 2-core CPU")


UNIT_NAMES = {"eval": "greedy task-turns", "self_refine": "Self-Refine tasks", "train": "training rollouts"}


def training(P, updates: int, gpu: Gpu | None = None, **overrides) -> Estimate | None:
    """`updates` CoCoS updates with P's training configuration (and TrainConfig overrides)."""
    cfg = P.train_config(updates=updates, **overrides)
    rollouts = cfg.prompts_per_update * cfg.k
    what = f"training, {updates} updates x {rollouts} rollouts"
    if P.name == "tiny":
        return _measured(what, "train", rollouts * updates)
    s = shape(cfg.model)
    if s is None or gpu is None:
        return None
    first = cfg.prompts_per_update if cfg.share_first_turn else rollouts
    prompt = PROMPT_TOKENS["task"] + (PROMPT_TOKENS["fewshot"] if cfg.fewshot else 0)
    t1, st1 = generation_s(s, gpu, first, cfg.gen_batch_size, prompt, cfg.max_new_tokens, cfg.stop_at_done)
    t2, st2 = generation_s(s, gpu, rollouts * (cfg.turns - 1), cfg.gen_batch_size, PROMPT_TOKENS["turn2"],
                           cfg.max_new_tokens, cfg.stop_at_done)
    tokens = rollouts * (PROMPT_TOKENS["turn2"] + COMPLETION["median"])
    backward = TRAIN_FLOPS_PER_TOKEN * s.params * tokens / (gpu.fp16_tflops * 1e12 * UTILISATION)
    per = t1 + t2 + backward
    return Estimate(what, per * updates, "estimated",
                    f"{gpu.name}: ~{per:.0f} s an update, {st1 + st2} decode steps and {tokens:,} trained tokens each")


def released(plan, gpu: Gpu) -> list[Estimate]:
    """One Estimate per evaluation of a release_run.Plan (its models' shapes, EOS stop unless stop_at_done)."""
    out = []
    for _pair, task_set, role, name in plan.runs():
        s = shape(name)
        n = plan.n_tasks(task_set)
        few = role == "base" and task_set.startswith("mbpp")
        prompt = PROMPT_TOKENS["task"] + (PROMPT_TOKENS["fewshot"] if few else 0)
        t1, s1 = generation_s(s, gpu, n, plan.batch_size, prompt, 512, plan.stop_at_done)
        tn, sn = generation_s(s, gpu, n, plan.batch_size, PROMPT_TOKENS["turn2"], 512, plan.stop_at_done)
        sec = t1 + (plan.turns - 1) * tn
        out.append(Estimate(f"{name} on {task_set}, {n} tasks x {plan.turns} turns", sec, "estimated",
                            _gpu_detail(gpu, s1 + (plan.turns - 1) * sn, s, plan.batch_size)))
    return out


def for_notebook(notebook: str, P, gpu_name: str | None = None, k: int = 4) -> list[Estimate]:
    """The long cells of notebook `notebook` ("01".."05" or its file name) in profile P; GPU profiles
    are estimated for the GPU named `gpu_name` (default: a T4). k: samples per task (02)."""
    key = notebook[:2]
    gpu = None if P.name == "tiny" else gpu_for(gpu_name)
    n = len(P.tasks()) if P.name == "tiny" else (P.n_eval or 500)
    simple, refine = "simple prompting", "Self-Refine"
    if key == "01":
        items = [evaluation(P, n, P.eval_turns, gpu=gpu, label=simple), evaluation(P, n, 2, "self-refine", gpu, refine)]
    elif key == "02":
        items = [evaluation(P, n * k, 5, gpu=gpu, label="rollouts", greedy=False)]   # one turn, then two 2-turn runs, k samples
    elif key == "03":
        items = [training(P, P.train_config().updates, gpu)]
    elif key == "04":
        items = [evaluation(P, n, P.eval_turns, gpu=gpu, label=f"base, {simple}"),
                 evaluation(P, n, 2, "self-refine", gpu, f"base, {refine}"),
                 evaluation(P, n, P.eval_turns, gpu=gpu, label="the CoCoS policy")]
    elif key == "05":  # the three gamma-check runs (the ablation set itself is committed, not run)
        train = training(P, P.gamma_check_updates, gpu, prompts_per_update=P.gamma_check_prompts)
        items = [None if train is None else
                 Estimate(f"3 gamma-check runs: {train.what}", 3 * train.seconds, train.basis, train.detail)]
    else:
        items = []
    return [e for e in items if e is not None]


def show(estimates: list[Estimate], title: str = "time ahead", out=print) -> None:
    """Print the estimates, one line each, after a title line with their total."""
    if not estimates:
        out(f"{title}: no estimate for this profile")
        return
    out(f"{title} (~{duration(sum(e.seconds for e in estimates))} in all):")
    for e in estimates:
        out(f"  {e.line()}")
