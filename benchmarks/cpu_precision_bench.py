"""fp32 against bf16 on the real model, on this CPU, in one run: decoding, log-probs, a LoRA update, accuracy.

  python benchmarks/cpu_precision_bench.py [--prompts 32] [--batches 8 16 32] [--threads 2]
      [--skip-accuracy] [--out data/results/real/cpu_precision_bench.jsonl]

Each (dtype, section) runs in a child process of its own, so `peak_rss_gib` is that section's peak
(resident memory, model included). Sections, in the order they run (fp32 then bf16 each time):

- `decode`: the packed backend (cocos_lib.generation.packed), greedy, the chat-format turn-1 prompts of the first
  --prompts HumanEval tasks, stop at the end of the code block, 512 new tokens at most; per batch size
  seconds, new tokens and new tokens/s; the share of rows whose extracted code equals fp32's.
- `logprobs`: log pi(y|x) of those prompts + completions (no grad, micro-batch 8): tokens/s.
- `update`: one real `rl.rl_step` (LoRA r = 8 on q/k/v/o/gate/up/down, fp32 adapter and AdamW, micro-batch 4,
  fused path; `--only-checkpointing`: with and without gradient checkpointing) on trajectories made of the
  first --update-rollouts prompts and their bf16 greedy completions
  with alternating rewards (so every group has a gradient): seconds per rollout, split into log-probs and backward.
- `accuracy` (bf16): greedy turn 1 on all 164 HumanEval tasks in the committed study's settings (chat, 512
  tokens, packed), against the committed fp32 study (data/results/real/study_cocos.jsonl): Acc@t1 both, and
  the tasks whose verdict changed. --accuracy-rows FILE reads those bf16 answers from an evaluation already
  run (`python -m cocos_lib.evaluate ... --out FILE` in the same settings) instead of generating them again;
  --skip-accuracy leaves the section out.

JSON lines; the `ratio` lines divide bf16's throughput by fp32's measured in this same run.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MODEL = "qwen2.5-coder-0.5b-instruct"
STUDY = ROOT / "data" / "results" / "real" / "study_cocos.jsonl"


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2   # Linux: KiB


def _setup(dtype: str, prompts_n: int, threads: int):
    import torch
    from cocos_lib.models import load_policy
    from cocos_lib.prompts import render_prompt
    from cocos_lib.rollout import encode_prompts
    from cocos_lib.tasks import load_humaneval
    torch.set_num_threads(threads)
    policy = load_policy(MODEL, dtype=dtype, device="cpu")
    tasks = load_humaneval()[:prompts_n]
    prompts = encode_prompts(policy.tokenizer, [render_prompt(policy.tokenizer, t, [], "chat") for t in tasks], None)
    return policy, tasks, prompts


def _completions(policy, prompts, batch: int):
    from cocos_lib.generation.dispatch import generate
    from cocos_lib.prompts import CHAT_STOP
    from cocos_lib.sampling import SamplingConfig
    cfg = SamplingConfig(greedy=True, max_new_tokens=512, stop=CHAT_STOP, batch_size=batch)
    return generate(policy, prompts, cfg, backend="packed")


def section_decode(policy, tasks, prompts, args) -> list[dict]:
    from cocos_lib.prompts import extract_answer
    from cocos_lib.rollout import decode_completion
    out = []
    for batch in args.batches:
        t = time.perf_counter()
        ids = _completions(policy, prompts, batch)
        secs = time.perf_counter() - t
        n = sum(map(len, ids))
        code = [extract_answer(decode_completion(policy, x), "chat") for x in ids]
        out.append(dict(batch=batch, seconds=secs, new_tokens=n, new_tokens_per_s=n / secs, code=code))
    return out


def section_logprobs(policy, tasks, prompts, args) -> list[dict]:
    import torch
    from cocos_lib.logprobs import logprobs_no_grad
    batch = _batch(policy, prompts, _completions(policy, prompts, max(args.batches)))
    t = time.perf_counter()
    with torch.no_grad():
        logprobs_no_grad(policy.model, batch, 8, 1.0)
    secs = time.perf_counter() - t
    tokens = int(batch.attention_mask.sum())
    return [dict(rows=len(prompts), tokens=tokens, seconds=secs, tokens_per_s=tokens / secs)]


def _batch(policy, prompts, comps):
    from cocos_lib.logprobs import build_batch
    return build_batch(_trajectories(prompts, comps), [2], policy.tokenizer.pad_token_id)


def _trajectories(prompts, comps, tasks=None):
    from cocos_lib.trajectory import Trajectory, Turn
    trajs = []
    for i, (p, c) in enumerate(zip(prompts, comps)):
        turns = [Turn(list(p), list(c), "", "", None, 0.0), Turn(list(p), list(c), "", "", None, float(i % 2))]
        trajs.append(Trajectory(task=None if tasks is None else tasks[i], turns=turns, group=i // 2, sample=i % 2))
    return trajs


def section_update(policy_unused, tasks, prompts, args) -> list[dict]:
    import torch
    from cocos_lib.config import make_config
    from cocos_lib.optim import make_optimizer
    from cocos_lib.rl import rl_step
    from cocos_lib.train import load_models
    cfg = make_config("cpu", dtype="bf16", micro_batch=4, lora_r=8, lora_alpha=16)
    gen, _ = load_models(cfg)                                   # the rollouts: bf16 greedy (only their lengths matter)
    prompts = prompts[:args.update_rollouts]
    comps = _completions(gen, prompts, max(args.batches))
    del gen
    ckpt = args.section != "update-nockpt"  # the variant: no gradient checkpointing, micro-batch 2 (memory)
    cfg = make_config("cpu", dtype=args.dtype, micro_batch=4 if ckpt else 2, lora_r=8, lora_alpha=16,
                      gradient_checkpointing=ckpt)
    policy, ref = load_models(cfg)
    trajs = _trajectories(prompts, comps)
    opt = make_optimizer(policy.model, cfg.lr, cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda u: 1.0)
    t = time.perf_counter()
    m = rl_step(policy, ref, opt, sched, trajs, cfg.rl_config())
    secs = time.perf_counter() - t
    tokens = sum(len(c) for c in comps) + sum(len(p) for p in prompts)
    return [dict(rollouts=len(trajs), tokens=tokens, gradient_checkpointing=ckpt, micro_batch=cfg.micro_batch,
                 seconds=secs, seconds_per_rollout=secs / len(trajs),
                 sec_logprobs=m["sec_logprobs"], sec_backward=m["sec_backward"], grad_norm=m["grad_norm"])]


def section_accuracy(policy, tasks_unused, prompts_unused, args) -> list[dict]:
    t = time.perf_counter()
    if args.accuracy_rows:
        rows = [json.loads(line) for line in Path(args.accuracy_rows).read_text().splitlines() if line.strip()]
        bf16 = {r["task_id"]: bool(r["correct"]) for r in rows if r["turn"] == 1 and r["sample"] == 0}
    else:
        from cocos_lib.evaluate import evaluate
        from cocos_lib.executor import open_executor
        from cocos_lib.sampling import SamplingConfig
        from cocos_lib.tasks import load_humaneval
        cfg = SamplingConfig(greedy=True, max_new_tokens=512, batch_size=32)
        with open_executor(workers=2) as ex:
            df = evaluate(policy, load_humaneval(), turns=1, sampling=cfg, executor=ex, backend="packed",
                          prompt_format="chat", progress=False)
        bf16 = {r.task_id: bool(r.correct) for r in df.itertuples()}
    secs = time.perf_counter() - t
    rows = [json.loads(line) for line in STUDY.read_text().splitlines() if line.strip()]
    fp32 = {r["task_id"]: bool(r["correct"]) for r in rows if r["turn"] == 1}
    changed = sorted(t for t in bf16 if bf16[t] != fp32[t])
    return [dict(tasks=len(bf16), seconds=secs, source=args.accuracy_rows or "generated here", acc_t1_bf16=sum(bf16.values()) / len(bf16),
                 acc_t1_fp32_committed=sum(fp32.values()) / len(fp32), changed=changed,
                 now_right=[t for t in changed if bf16[t]], now_wrong=[t for t in changed if not bf16[t]])]


SECTIONS = {"decode": section_decode, "logprobs": section_logprobs, "update": section_update,
            "update-nockpt": section_update, "accuracy": section_accuracy}


def child(args) -> None:
    """One (dtype, section): print its records as JSON lines on stdout."""
    t = time.perf_counter()
    policy = tasks = prompts = None
    if args.section == "accuracy" and args.accuracy_rows:
        pass
    elif not args.section.startswith("update"):
        policy, tasks, prompts = _setup(args.dtype, args.prompts, args.threads)
    else:
        import torch
        from cocos_lib.models import load_policy
        from cocos_lib.prompts import render_prompt
        from cocos_lib.rollout import encode_prompts
        from cocos_lib.tasks import load_humaneval
        torch.set_num_threads(args.threads)
        tok = load_policy(MODEL, dtype="fp32", device="cpu").tokenizer  # prompts only
        tasks = load_humaneval()[:args.prompts]
        prompts = encode_prompts(tok, [render_prompt(tok, x, [], "chat") for x in tasks], None)
    for rec in SECTIONS[args.section](policy, tasks, prompts, args):
        print(json.dumps(dict(rec, peak_rss_gib=peak_rss_gib(), child_seconds=time.perf_counter() - t)), flush=True)


def run_child(args, dtype: str, section: str) -> list[dict]:
    cmd = [sys.executable, __file__, "--child", "--dtype", dtype, "--section", section, "--prompts", str(args.prompts),
           "--threads", str(args.threads), "--update-rollouts", str(args.update_rollouts),
           "--batches", *map(str, args.batches)]
    cmd += ["--accuracy-rows", args.accuracy_rows] if args.accuracy_rows else []
    out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, TOKENIZERS_PARALLELISM="false"))
    if out.returncode:
        raise SystemExit(f"cpu_precision_bench: {dtype}/{section} failed:\n{out.stderr[-3000:]}")
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def emit(rec: dict, out: str | None) -> None:
    line = json.dumps(rec)
    print(line, flush=True)
    if out:
        with open(out, "a") as f:
            f.write(line + "\n")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--batches", nargs="+", type=int, default=[8, 16, 32])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--update-rollouts", type=int, default=8, help="rollouts in the timed LoRA update")
    p.add_argument("--skip-accuracy", action="store_true")
    p.add_argument("--only-accuracy", action="store_true", help="only the bf16 HumanEval Acc@t1 line (--accuracy-rows)")
    p.add_argument("--only-checkpointing", action="store_true",
                   help="only the bf16 update with and without gradient checkpointing (ratio line 'checkpointing')")
    p.add_argument("--accuracy-rows", default=None, help="bf16 HumanEval answers already evaluated (evaluate --out)")
    p.add_argument("--out", default=None, help="also append the JSON lines to this file")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--dtype", default="fp32", help=argparse.SUPPRESS)
    p.add_argument("--section", default="decode", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    import platform
    import torch
    import transformers
    from cocos_lib.hardware import cpu_bf16_flags
    load = os.getloadavg()
    common = dict(model=MODEL, threads=args.threads, prompts=args.prompts, torch=torch.__version__,
                  transformers=transformers.__version__)
    emit(dict(common, section="env", argv=sys.argv[1:] if argv is None else list(argv), cpu_bf16_flags=cpu_bf16_flags(),
              cpus=os.cpu_count(), loadavg_start=load, platform=platform.platform()), args.out)
    if args.only_checkpointing:
        return checkpointing_ab(args, common)
    if args.only_accuracy:
        for r in run_child(args, "bf16", "accuracy"):
            emit(dict(common, section="accuracy", dtype="bf16", **r), args.out)
        return None
    got: dict = {}
    for section in ("decode", "logprobs", "update"):
        for dtype in ("fp32", "bf16"):
            recs = run_child(args, dtype, section)
            got[dtype, section] = recs
            for r in recs:
                emit(dict(common, section=section, dtype=dtype, **{k: v for k, v in r.items() if k != "code"}), args.out)
    for f32, b16 in zip(got["fp32", "decode"], got["bf16", "decode"]):
        same = sum(a == b for a, b in zip(f32["code"], b16["code"])) / len(f32["code"])
        emit(dict(common, section="ratio", what="decode", batch=f32["batch"],
                  bf16_over_fp32=b16["new_tokens_per_s"] / f32["new_tokens_per_s"], same_code_share=same), args.out)
    (lf,), (lb,) = got["fp32", "logprobs"], got["bf16", "logprobs"]
    emit(dict(common, section="ratio", what="logprobs", bf16_over_fp32=lb["tokens_per_s"] / lf["tokens_per_s"]),
         args.out)
    (uf,), (ub,) = got["fp32", "update"], got["bf16", "update"]
    emit(dict(common, section="ratio", what="update", bf16_over_fp32=uf["seconds_per_rollout"] / ub["seconds_per_rollout"]),
         args.out)
    if not args.skip_accuracy:
        for r in run_child(args, "bf16", "accuracy"):
            emit(dict(common, section="accuracy", dtype="bf16", **r), args.out)
    emit(dict(common, section="end", loadavg_end=os.getloadavg()), args.out)


def checkpointing_ab(args, common: dict) -> None:
    """The bf16 LoRA update with gradient checkpointing (micro-batch 4) and without (micro-batch 2), same rollouts."""
    got = {}
    for section in ("update", "update-nockpt"):
        (got[section],) = run_child(args, "bf16", section)
        emit(dict(common, section=section, dtype="bf16", **got[section]), args.out)
    emit(dict(common, section="ratio", what="checkpointing", dtype="bf16",
              with_over_without=got["update"]["seconds_per_rollout"] / got["update-nockpt"]["seconds_per_rollout"]),
         args.out)
    emit(dict(common, section="end", loadavg_end=os.getloadavg()), args.out)


if __name__ == "__main__":
    main()
