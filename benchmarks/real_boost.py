"""Boost then one RLOO update on the real Qwen2.5-Coder-0.5B-Instruct, on the CPU, in a few minutes.

  python benchmarks/real_boost.py [--mbpp FILE] [--steps 2] [--batch 4] [--dtype fp32]
      [--out data/results/real/boost_cpu]

What the `paper` profile does first (cocos_lib.boost), shortened: `steps` SFT steps of `batch` pairs from MBPP
train (turn-1 and turn-2 pairs 1:1, lr 2e-5 cosine, clipping at 1.0 as the release's Boost), full fine-tuning.
Then one RL step (rl.rl_step, the paper profile's RLConfig, no clipping) on hand-built k = 2 trajectories of
`rl_tasks` MBPP train tasks: turn 2 = the reference (reward 1) or the reference with its last line cut (reward
0), teacher-forced, no generation (generating 512 tokens on 2 CPU cores takes tens of minutes). It measures the
pre-clip gradient norm of one RL update of a real model (docs/paper.md §10 "gradient clipping").
Writes OUT/boost_metrics.jsonl, OUT/rl_step.json, OUT/meta.json (no model files).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]


def hand_trajectories(policy, tasks, reward_of):
    """k = 2 trajectories per task: turn 1 the reference, turn 2 the reference (good) or a cut one (bad)."""
    from cocos_lib.executor import TestReport
    from cocos_lib.prompts import DONE, build_prompt
    from cocos_lib.trajectory import Trajectory, Turn
    tok, trajs = policy.tokenizer, []
    for g, task in enumerate(tasks):
        ref = task.reference.strip()
        bad = "\n".join(ref.split("\n")[:-1]) or "pass"
        t1_prompt = tok(build_prompt(task, []))["input_ids"]
        t1 = Turn(t1_prompt, tok(f"{ref}\n{DONE}")["input_ids"], ref, ref, TestReport(("passed",)), 1.0)
        for s, code in enumerate((ref, bad)):
            p2 = tok(build_prompt(task, [ref]))["input_ids"]
            rep = TestReport(("passed",) if code == ref else ("failed",))
            t2 = Turn(p2, tok(f"{code}\n{DONE}")["input_ids"], code, code, rep, reward_of(rep))
            trajs.append(Trajectory(task=task, turns=[t1, t2], group=g, sample=s))
    return trajs


def main(argv=None) -> dict:
    import torch

    from cocos_lib.boost import BoostConfig, boost, boost_pairs
    from cocos_lib.config import make_config
    from cocos_lib.models import frozen_reference, load_policy
    from cocos_lib.optim import make_optimizer
    from cocos_lib.rewards import REWARDS
    from cocos_lib.rl import rl_step
    from cocos_lib.tasks import load_mbpp
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    p.add_argument("--mbpp", default=None, help="a local mbpp.jsonl (google-research); default: the vendored copy")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--micro-batch", type=int, default=2)
    p.add_argument("--rl-tasks", type=int, default=2)
    p.add_argument("--dtype", default="fp32")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "data" / "results" / "real" / "boost_cpu"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    t0 = time.time()
    train = load_mbpp("train", path=args.mbpp)
    policy = load_policy(args.model, dtype=args.dtype, device="cpu")
    cfg = BoostConfig(steps=args.steps, batch=args.batch, micro_batch=args.micro_batch, lr=2e-5, seed=42)
    hist = boost(policy, boost_pairs(train), cfg, out_dir=None, progress=False)
    out.mkdir(parents=True, exist_ok=True)
    (out / "boost_metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in hist))
    sec_boost = time.time() - t0
    # one RL update from the Boost model, the paper profile's RL settings (no clipping: grad_norm is pre-clip)
    paper = make_config("paper")
    rl_cfg = paper.rl_config()
    ref = frozen_reference(policy)
    policy.model.train()
    optimizer = make_optimizer(policy.model, paper.lr, paper.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda u: 1.0)
    trajs = hand_trajectories(policy, train[:args.rl_tasks], REWARDS[paper.reward])
    t1 = time.time()
    step = rl_step(policy, ref, optimizer, scheduler, trajs, rl_cfg)
    step["sec_total"] = time.time() - t1
    (out / "rl_step.json").write_text(json.dumps(step, indent=1) + "\n")
    meta = {"command": "python benchmarks/real_boost.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "model": args.model, "dtype": args.dtype, "device": "cpu", "threads": args.threads,
            "boost": dict(steps=args.steps, batch=args.batch, micro_batch=args.micro_batch, lr=2e-5,
                          pairs=len(boost_pairs(train)), tasks="mbpp train (task_ids 601-974)", full_finetune=True),
            "rl": dict(tasks=args.rl_tasks, k=2, max_grad_norm=rl_cfg.max_grad_norm, reward=paper.reward,
                       trajectories="hand-built, teacher-forced (no generation)"),
            "wall_s": dict(boost=round(sec_boost, 1), rl_step=round(step["sec_total"], 1),
                           total=round(time.time() - t0, 1)),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "versions": {"python": platform.python_version(), "torch": torch.__version__}}
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps({"boost": [(m["loss"], m["grad_norm"]) for m in hist], "rl_grad_norm": step["grad_norm"],
                      "wall_s": meta["wall_s"]}))
    return meta


if __name__ == "__main__":
    main()
