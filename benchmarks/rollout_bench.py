"""Rollout benchmark: the released pipeline's rollouts (HF `generate`, no stop, 512 new tokens)
against the repo's path (backend "static": static KV cache, compiled decode step, device-side
stop detection, early exit), in one run. JSON lines on stdout, and appended to --out (default
$OUT/rollout_bench.jsonl when $OUT is set).

  CPU (default without CUDA): the repo's tiny policy (the shipped `tiny-warmstart` if built, else a
      random tiny model), toy-task prompts; rollouts/s for hf vs static, with and without [DONE].
  --gpu: Qwen2.5-0.5B / 1.5B architectures with random weights (from_config, no hub), batch 128
      and 64, 300-token prompts: baseline vs static at 512 tokens (ms per decode step, new tokens/s,
      peak memory, ratio), static at realistic output lengths, a training step (32 x 812 tokens,
      gradient checkpointing), the colab plan's peak (0.5B, fp16, LoRA), and the hours of a full
      `paper` run on this card, from the measured times. Sized to finish in ~8 minutes on an H100.
  --smoke: the --gpu code path with 2-layer configs and tiny sizes (runs on CPU; for tests).

Realistic lengths: random weights never write [DONE], so each row is stopped after a length drawn
(seeded, with replacement) from MEASURED solution lengths: the Qwen2.5 tokenizer's token counts of
the 164 HumanEval reference programs + "\n[DONE]" (median 168, p90 319; data/results/real/
tokenizer_facts.json, written by benchmarks/tokenizer_facts.py). The prompt length defaults to the
measured medians of the completion-format prompts weighted as an update generates them (64 turn-1
at 256 tokens, 128 turn-2 at 479: 405; the committed CPU measurements used 403, from the prompts before the
released layout added a blank line and [BEGIN]). `--lengths lognormal --len-median M --len-sigma S` and
`--prompt-len P` bring back the earlier assumption (lognormal, median 70, sigma 0.5; 300 tokens).

  python benchmarks/rollout_bench.py              # CPU, tiny policy
  python benchmarks/rollout_bench.py --gpu        # on a lent GPU (~8 min)
  python benchmarks/rollout_bench.py --smoke      # the GPU path on CPU with tiny shapes

On the lent machine (its image has older transformers/peft than this repo's venv), carry the
repo's versions as wheels, once here:  echo /.whl/ >> .git/info/exclude; .venv/bin/python -m pip
download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform
manylinux2014_x86_64 -d .whl transformers==5.24.0 peft==0.21.2   then run there (carry [".whl"]):
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export
  PYTHONPATH=/tmp/site; PYTHONUNBUFFERED=1 python3 benchmarks/rollout_bench.py --gpu
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch  # noqa: E402

from benchmarks import tokenizer_facts as facts  # noqa: E402
from cocos_lib.generation import static as fastgen
from cocos_lib.notebook import memory  # noqa: E402
from cocos_lib.generation.dispatch import generate  # noqa: E402
from cocos_lib.sampling import SamplingConfig  # noqa: E402

ARCHS = ("Qwen/Qwen2.5-1.5B", "Qwen/Qwen2.5-0.5B")
SMOKE = dict(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=512)


class Run:
    """Output sink and time budget shared by all measurements."""

    def __init__(self, out: str | None, budget_s: float):
        self.out, self.budget_s, self.t0 = out, budget_s, time.perf_counter()

    def emit(self, rec: dict) -> dict:
        line = json.dumps(rec)
        print(line, flush=True)
        if self.out:
            with open(self.out, "a") as f:
                f.write(line + "\n")
        return rec

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.t0)


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device):
    sync(device)
    t = time.perf_counter()
    res = fn()
    sync(device)
    return res, time.perf_counter() - t


def reset_peak(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.device(device).type == "cuda" else None


def realistic_lengths(args, n: int, seed: int, cap: int) -> tuple[list[int], dict]:
    """Per-rollout stop lengths: resampled from the measured solution lengths, or the lognormal."""
    if args.lengths == "lognormal" or args.smoke:
        median = 12 if args.smoke else args.len_median
        return assumed_lengths(n, median, args.len_sigma, seed, cap), dict(dist="lognormal (assumed)", median=median,
                                                                           sigma=args.len_sigma)
    return facts.resample_lengths(n, seed, cap, args.facts), dict(dist=facts.LENGTHS_SOURCE)


def assumed_lengths(n: int, median: float, sigma: float, seed: int, cap: int) -> list[int]:
    """Per-rollout stop lengths ~ lognormal(log median, sigma), clipped to [8, cap] (an assumption)."""
    rng = random.Random(seed)
    return [int(min(cap, max(8, round(rng.lognormvariate(math.log(median), sigma))))) for _ in range(n)]


# ------------------------------------------------------------------ GPU mode (random weights)
def random_policy(arch: str, device, dtype, smoke: bool):
    from transformers import AutoModelForCausalLM
    cfg = memory.arch_config(arch, **(SMOKE if smoke else {}))
    cfg.eos_token_id = None  # random weights: only max_new_tokens (or the forced stop) ends a row
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    model.generation_config.eos_token_id = None
    return SimpleNamespace(model=model.eval(), tokenizer=None, name=arch, eos_token_ids=[])


def random_prompts(batch: int, length: int, vocab: int, seed: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, length), generator=g).tolist()


def hf_baseline(policy, prompts, new: int, device) -> dict:
    """The released pipeline: HF generate (dynamic cache), sampling T=0.9, exactly `new` tokens."""
    from transformers import GenerationConfig
    ids = torch.tensor(prompts, device=device)

    def run(n):
        gc = GenerationConfig(max_new_tokens=n, min_new_tokens=n, do_sample=True, temperature=0.9, top_p=1.0,
                              top_k=0, eos_token_id=None, pad_token_id=0, bos_token_id=None)
        with torch.inference_mode():
            return policy.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=gc)

    run(4)
    _, t1 = timed(lambda: run(1), device)
    reset_peak(device)
    out, tn = timed(lambda: run(new), device)
    assert out.shape[1] == ids.shape[1] + new
    return dict(seconds=tn, ms_per_step=1e3 * (tn - t1) / (new - 1), new_tokens_per_s=len(prompts) * new / tn,
                s_per_rollout=tn / len(prompts), peak_gib=peak_gib(device), mean_new_tokens=new)


def static_run(policy, prompts, new: int, device, forced: list[int] | None, compile_mode: str | None) -> dict:
    """Backend "static" (warm-up first: compile and CUDA-graph capture for this batch shape)."""
    cfg = SamplingConfig(max_new_tokens=new, temperature=0.9, top_p=1.0, stop=None, batch_size=len(prompts))
    B = len(prompts)

    def run(f, seed):
        return fastgen.static_generate(policy, prompts, cfg, seed=seed, forced_lengths=f,
                                       compile=None if compile_mode else False,  # None: on CUDA only
                                       compile_mode=compile_mode or "reduce-overhead")

    check = 16                                   # static_generate's default check_every
    _, warm = timed(lambda: run([check] * B, 0), device)
    _, t16 = timed(lambda: run([check] * B, 1), device)   # prefill + 16 steps (exits at the first check)
    reset_peak(device)
    out, t = timed(lambda: run(forced, 2), device)
    lens = [len(o) for o in out]
    if forced is not None:
        assert lens == forced
    executed = min(new, -(-max(lens) // check) * check)   # decode steps actually run
    return dict(seconds=t, warmup_s=warm, ms_per_step=1e3 * (t - t16) / max(executed - check, 1),
                steps=executed, new_tokens_per_s=sum(lens) / t, s_per_rollout=t / B, peak_gib=peak_gib(device),
                mean_new_tokens=sum(lens) / B)


def train_step(policy, rows: int, seq: int, prompt: int, micro: int, device, lora_r: int = 0) -> dict:
    """One policy-gradient update on `rows` x `seq` tokens (loss on the last seq - prompt), gradient
    checkpointing, micro-batches of `micro`, AdamW; plus one no-grad log-prob pass (old / ref)."""
    from cocos_lib.logprobs import token_logprobs
    model = policy.model
    if lora_r:
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(r=lora_r, lora_alpha=2 * lora_r, target_modules="all-linear"))
    if hasattr(model, "activation_checkpointing_enable"):  # as cocos_lib.models.load_policy does
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if lora_r:
        model.enable_input_require_grads()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.0)
    vocab = model.get_output_embeddings().weight.shape[0]
    ids = torch.randint(0, vocab, (rows, seq), device=device)
    mask = torch.ones_like(ids)
    adv = torch.randn(rows, device=device)

    def step():
        for a in range(0, rows, micro):
            lp = token_logprobs(model, ids[a:a + micro], mask[a:a + micro], start=prompt - 1)
            loss = -(lp[:, prompt - 1:].sum(-1) * adv[a:a + micro]).sum() / rows
            loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    def logprob_pass():
        with torch.no_grad():
            for a in range(0, rows, micro):
                token_logprobs(model, ids[a:a + micro], mask[a:a + micro], start=prompt - 1)

    step()  # warm-up (allocates Adam states)
    reset_peak(device)
    _, t = timed(step, device)
    peak = peak_gib(device)
    _, tl = timed(logprob_pass, device)
    (getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable)()
    model.eval()
    return dict(train_step_s=t, logprob_pass_s=tl, peak_gib=peak, rows=rows, seq=seq, micro_batch=micro,
                trainable_params=sum(p.numel() for p in params))


def generation_bench(args, run: Run, arch: str, B: int, ctx: dict) -> tuple[dict, dict] | None:
    """Baseline vs static (512 tokens) and static at the assumed realistic lengths, one batch size."""
    policy = random_policy(arch, ctx["device"], ctx["dtype"], args.smoke)
    P, N = ctx["P"], ctx["N"]
    prompts = random_prompts(B, P, policy.model.config.vocab_size, seed=B)
    common = dict(arch=arch, smoke=args.smoke, device=ctx["name"], batch=B, prompt_len=P, dtype=str(ctx["dtype"]))
    base = run.emit(dict(common, section="baseline_hf_nostop", new_tokens=N,
                         **hf_baseline(policy, prompts, N, ctx["device"])))
    mode = args.compile_mode
    try:
        ours = static_run(policy, prompts, N, ctx["device"], None, mode)
    except Exception as e:  # a compile failure must not cost the whole run: fall back to eager
        run.emit(dict(common, section="static_error", compile_mode=mode, error=f"{type(e).__name__}: {e}"[:500]))
        fastgen.release_static_cache(policy)
        mode = None
        ours = static_run(policy, prompts, N, ctx["device"], None, mode)
    run.emit(dict(common, section="static_nostop", compile_mode=mode, new_tokens=N, **ours))
    lens, how = realistic_lengths(args, B, seed=B, cap=N)
    real = run.emit(dict(common, section="static_realistic", compile_mode=mode, new_tokens_cap=N,
                         lengths=dict(how, mean=sum(lens) / B, max=max(lens)),
                         **static_run(policy, prompts, N, ctx["device"], lens, mode)))
    run.emit(dict(common, section="ratio", step_speedup_nostop=base["ms_per_step"] / ours["ms_per_step"],
                  rollout_speedup_nostop=base["s_per_rollout"] / ours["s_per_rollout"],
                  rollout_speedup_realistic=base["s_per_rollout"] / real["s_per_rollout"]))
    fastgen.release_static_cache(policy)
    return base, real


def train_bench(args, run: Run, arch: str, ctx: dict) -> dict:
    policy = random_policy(arch, ctx["device"], ctx["dtype"], args.smoke)
    P = ctx["P"]
    rows, seq, micro = (4, 40, 2) if args.smoke else (args.train_rows, args.train_seq, args.micro_batch)
    tr = run.emit(dict(arch=arch, smoke=args.smoke, device=ctx["name"], section="train_step",
                       dtype=str(ctx["dtype"]), **train_step(policy, rows, seq, P, micro, ctx["device"])))
    est = memory.estimate(memory.Shape.from_config(policy.model.config), memory.MemoryConfig(
        dtype="bf16" if ctx["dtype"] == torch.bfloat16 else "fp32", reference="none", micro_batch=micro,
        train_seq=seq, logit_tokens=seq - P, overhead_gb=0.0))
    run.emit(dict(arch=arch, section="memory_check", measured_train_peak_gib=tr["peak_gib"],
                  estimated_train_peak_gib=est["peak_train"]))
    return tr


def equality_bench(args, run: Run, ctx: dict) -> None:
    """Correctness on this device: greedy tokens of the compiled static path vs HF generate, fp32,
    left-padded prompts of different lengths (Qwen2.5-0.5B shape, random weights)."""
    policy = random_policy("Qwen/Qwen2.5-0.5B", ctx["device"], torch.float32, args.smoke)
    vocab, n_new = policy.model.config.vocab_size, 32
    prompts = [p[: 20 + 2 * i] for i, p in enumerate(random_prompts(8, 34, vocab, seed=7))]
    ids = torch.tensor([[0] * (34 - len(p)) + p for p in prompts], device=ctx["device"])
    mask = torch.tensor([[0] * (34 - len(p)) + [1] * len(p) for p in prompts], device=ctx["device"])
    with torch.inference_mode():
        ref = policy.model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=n_new,
                                    min_new_tokens=n_new, eos_token_id=None, pad_token_id=0)[:, 34:].tolist()
    cfg = SamplingConfig(max_new_tokens=n_new, greedy=True, stop=None, batch_size=8)
    ours = fastgen.static_generate(policy, prompts, cfg, compile_mode=args.compile_mode)
    prefix = [next((j for j, (a, b) in enumerate(zip(r, o)) if a != b), n_new) for r, o in zip(ref, ours)]
    run.emit(dict(section="greedy_equality_vs_hf", device=ctx["name"], dtype="float32", rows=8, new_tokens=n_new,
                  identical_rows=sum(r == o for r, o in zip(ref, ours)), mean_common_prefix=sum(prefix) / 8))
    fastgen.release_static_cache(policy)


def gpu_mode(args, run: Run) -> None:
    """Sections in priority order (each skipped once the time budget is spent): per arch the
    first batch size, its training step and the paper-run estimate; the colab plan; the other
    batch sizes. Every section builds its own random-weight model (fast on a GPU)."""
    for name in ("recompile_limit", "cache_size_limit"):  # one compiled graph per batch shape
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, 64)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ctx = dict(device=device, dtype=torch.bfloat16 if device == "cuda" else torch.float32,
               name=torch.cuda.get_device_name() if device == "cuda" else "cpu",
               P=12 if args.smoke else args.prompt_len or facts.measured_prompt_len(args.facts), N=48 if args.smoke else args.new_tokens)
    batches = [4, 2] if args.smoke else list(args.batches)
    plan = []
    for arch in args.archs:
        plan += [("gen", arch, batches[0]), ("train", arch, None)]
    plan += [("colab", None, None)] if args.colab else []
    plan += [("equality", None, None)]
    plan += [("gen", arch, B) for B in batches[1:] for arch in args.archs]
    gen = {}
    for kind, arch, B in plan:
        if run.left() < 60:
            run.emit(dict(section="skipped", what=kind, arch=arch, batch=B, reason="time budget (--budget-s)"))
            continue
        if kind == "gen":
            gen[arch, B] = generation_bench(args, run, arch, B, ctx)
        elif kind == "equality":
            equality_bench(args, run, ctx)
        elif kind == "train":
            tr = train_bench(args, run, arch, ctx)
            if (arch, batches[0]) in gen:
                hours(run, arch, ctx["name"], gen[arch, batches[0]], tr, args)
        else:
            colab_peak(args, run, device, args.smoke)
        reset_peak(device)


def hours(run: Run, arch, dev_name, gen, tr, args) -> None:
    """Full `paper` run (1500 updates; 64 prompts, k=2, shared turn 1 -> 192 rollouts generated and
    128 turn-2 rows trained per update, 1 no-grad log-prob pass: the reference; rl_step reuses
    the policy forward for the old log-probs when a group fits in a micro-batch). Execution of
    the tests (CPU, overlappable) and the longer turn-2 prompts are not included."""
    base, real = gen
    per_row = tr["train_step_s"] / tr["rows"] + tr["logprob_pass_s"] / tr["rows"]
    train_s = 128 * per_row
    upd = {name: 192 * g["s_per_rollout"] + train_s for name, g in (("baseline", base), ("repo", real))}
    run.emit(dict(arch=arch, device=dev_name, section="paper_run_estimate", updates=args.updates,
                  update_s=upd, hours={k: args.updates * v / 3600 for k, v in upd.items()},
                  assumptions="192 rollouts + 128 trained rows per update; generation at the measured batch; "
                              "test execution and longer turn-2 prompts not included"))


def colab_peak(args, run: Run, device, smoke) -> None:
    """The colab plan on this card: Qwen2.5-0.5B, fp16 weights, LoRA r=16 (fp32 adapters),
    generation batch 32 x (812 + 512), training micro-batch 4 x 1324, checkpointing."""
    plan = memory.plan("colab")
    c = plan["config"]
    dtype = torch.float16 if device == "cuda" else torch.float32
    policy = random_policy("Qwen/Qwen2.5-0.5B", device, dtype, smoke)
    P, N, B = (12, 16, 4) if smoke else (c["prompt_len"], c["new_tokens"], c["gen_batch"])
    prompts = random_prompts(B, P, policy.model.config.vocab_size, seed=1)
    gen = static_run(policy, prompts, N, device, realistic_lengths(args, B, 3, N)[0],
                     args.compile_mode)
    fastgen.release_static_cache(policy)
    seq, micro = (40, 2) if smoke else (c["train_seq"], c["micro_batch"])
    tr = train_step(policy, 2 * micro, seq, seq - (16 if smoke else c["logit_tokens"]), micro, device,
                    lora_r=c["lora_r"])
    measured = max(gen["peak_gib"] or 0, tr["peak_gib"] or 0)
    run.emit(dict(section="colab_plan", model=plan["model"], device=torch.cuda.get_device_name()
                  if device == "cuda" else "cpu", dtype=str(dtype), gen_peak_gib=gen["peak_gib"],
                  train_peak_gib=tr["peak_gib"], estimated_peak_gib=plan["peak"], t4_usable_gib=plan["device_gb"],
                  headroom_on_t4_gib=plan["device_gb"] - measured - 0.5 if device == "cuda" else None,
                  note="peak = torch max_memory_allocated on this card; +0.5 GiB CUDA context assumed for T4"))


# ------------------------------------------------------------------ CPU mode (tiny policy)
def tiny_policy(tmp: str):
    from cocos_lib.models import load_policy
    from cocos_lib.toy.tiny_models import make_tiny_policy
    try:
        from cocos_lib.toy.warmstart import warmstart_path
        if (Path(warmstart_path()) / "config.json").exists():
            return load_policy("tiny-warmstart", dtype="fp32", device="cpu"), "tiny-warmstart"
    except ImportError:
        pass
    return load_policy(make_tiny_policy(tmp, seed=0), dtype="fp32", device="cpu"), "random tiny (no warm-start)"


def toy_prompts(policy, n: int) -> list[list[int]]:
    from cocos_lib.prompts import turn1_prompt
    from cocos_lib.task_sets import load_tasks
    tasks = load_tasks("toy-test")[:n]
    return [policy.tokenizer.encode(turn1_prompt(t)) for t in tasks]


def cpu_mode(args, run: Run) -> None:
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        policy, name = tiny_policy(tmp)
        prompts = toy_prompts(policy, args.rollouts)
        tok = policy.tokenizer
        greedy = SamplingConfig(max_new_tokens=32, greedy=True, stop="[DONE]", batch_size=args.cpu_batch)
        same = generate(policy, prompts[:8], greedy, backend="hf") == generate(policy, prompts[:8], greedy,
                                                                               backend="static")
        for stop in ("[DONE]", None):
            for backend in ("hf", "static"):
                cfg = SamplingConfig(max_new_tokens=args.cpu_new_tokens, temperature=0.9, stop=stop,
                                     batch_size=args.cpu_batch, ignore_eos=stop is None)  # None: as released
                out, t = timed(lambda cfg=cfg, backend=backend: generate(policy, prompts, cfg, seed=0, backend=backend),
                               "cpu")
                n_tok = sum(len(o) for o in out)
                run.emit(dict(section="cpu_rollouts", policy=name, backend=backend, stop=stop, rollouts=len(out),
                              threads=args.threads, max_new_tokens=cfg.max_new_tokens, batch=cfg.batch_size,
                              seconds=t, rollouts_per_s=len(out) / t, new_tokens_per_s=n_tok / t,
                              mean_new_tokens=n_tok / len(out),
                              share_stopped=sum("[DONE]" in tok.decode(o) for o in out) / len(out),
                              greedy_identical_hf_static=same))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gpu", action="store_true", help="random-weight Qwen2.5 architectures (needs CUDA)")
    p.add_argument("--smoke", action="store_true", help="the --gpu path with 2-layer configs (CPU is fine)")
    p.add_argument("--out", default=None, help="JSON-lines file (default $OUT/rollout_bench.jsonl if $OUT)")
    p.add_argument("--archs", nargs="+", default=list(ARCHS), choices=sorted(memory.ARCHS))
    p.add_argument("--batches", nargs="+", type=int, default=[128, 64])
    p.add_argument("--prompt-len", type=int, default=None, help="default: measured (see the docstring)")
    p.add_argument("--new-tokens", type=int, default=512)
    p.add_argument("--lengths", choices=["measured", "lognormal"], default="measured",
                   help="stop lengths: resampled from --facts, or the lognormal of --len-median/--len-sigma")
    p.add_argument("--facts", default=str(facts.FACTS), help="tokenizer facts JSON (benchmarks/tokenizer_facts.py)")
    p.add_argument("--len-median", type=float, default=70.0, help="assumed median solution length (tokens)")
    p.add_argument("--len-sigma", type=float, default=0.5, help="assumed lognormal sigma of solution lengths")
    p.add_argument("--train-rows", type=int, default=32)
    p.add_argument("--train-seq", type=int, default=812)
    p.add_argument("--micro-batch", type=int, default=8)
    p.add_argument("--updates", type=int, default=1500)
    p.add_argument("--compile-mode", default="reduce-overhead", choices=["reduce-overhead", "cudagraphs"])
    p.add_argument("--no-colab", dest="colab", action="store_false", help="skip the colab-plan peak")
    p.add_argument("--budget-s", type=float, default=420.0, help="skip sections once this is spent")
    p.add_argument("--rollouts", type=int, default=32, help="CPU mode: toy prompts")
    p.add_argument("--cpu-batch", type=int, default=16)
    p.add_argument("--cpu-new-tokens", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    if args.gpu and not args.smoke and not torch.cuda.is_available():
        p.error("--gpu: no CUDA device here (use --smoke to run the same code path on CPU)")
    out = args.out or (os.path.join(os.environ["OUT"], "rollout_bench.jsonl") if os.environ.get("OUT") else None)
    run = Run(out, args.budget_s)
    import transformers
    run.emit(dict(section="env", torch=torch.__version__, transformers=transformers.__version__,
                  cuda=torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                  argv=sys.argv[1:] if argv is None else list(argv)))
    if args.gpu or args.smoke:
        gpu_mode(args, run)
    else:
        cpu_mode(args, run)


if __name__ == "__main__":
    main()
