"""Measure the learning signal of a profile's rollouts before sizing a run: roll out n tasks with k = max(--k)
corrections each (shared turn 1) and report, per k, the share of groups whose corrections do not all score the
same (cocos_lib.learning_signal), with the edit / repair / breakage shares of the corrections.

  python benchmarks/signal_probe.py --profile cpu --tasks mbpp-train --n 24 --k 2 4 8 [--out FILE]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import time
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch  # noqa: E402

from cocos_lib.config import make_config  # noqa: E402
from cocos_lib.executor import open_executor  # noqa: E402
from cocos_lib.learning_signal import summarise  # noqa: E402
from cocos_lib.models import describe_dtype  # noqa: E402
from cocos_lib.rollout import rollout  # noqa: E402
from cocos_lib.task_sets import load_tasks  # noqa: E402
from cocos_lib.train import load_models, rollout_config  # noqa: E402


def measure(policy, tasks, rcfg, executor, ks: Sequence[int], seed: int = 0, progress: bool = True) -> dict:
    """Roll out `tasks` with rcfg (k = max(ks), shared turn 1) and summarise what the groups could teach."""
    stats: dict = {}
    t = time.perf_counter()
    trajs = rollout(policy, tasks, rcfg, executor, seed=seed, progress=progress, stats=stats)
    return {**summarise(trajs, ks), "seconds": time.perf_counter() - t, **stats}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Measure the learning signal of a profile's rollouts (unequal groups, "
                                            "edits, repairs) before sizing a run.")
    p.add_argument("--profile", default="cpu")
    p.add_argument("--tasks", default="mbpp-train")
    p.add_argument("--n", type=int, default=48, help="tasks (the first n of a seeded shuffle)")
    p.add_argument("--k", type=int, nargs="+", default=[2, 4, 8], help="group sizes to report (rollout k = max)")
    p.add_argument("--temperature", type=float, default=None, help="default: the profile's")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the JSON summary here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    overrides = {"tasks": args.tasks, "k": max(args.k)}
    if args.temperature is not None:
        overrides["temperature"] = args.temperature
    cfg = make_config(args.profile, **overrides)
    tasks = load_tasks(cfg.tasks)
    random.Random(args.seed).shuffle(tasks)
    tasks = tasks[:args.n]
    policy, _ = load_models(dataclasses.replace(cfg, lora_r=0))
    print(describe_dtype(cfg.dtype, policy.device), file=sys.stderr)
    with open_executor(workers=cfg.exec_workers) as ex:
        res = measure(policy, tasks, rollout_config(cfg), ex, args.k, seed=args.seed)
    res = {"profile": args.profile, "tasks": args.tasks, "n": len(tasks), "k": max(args.k),
           "temperature": cfg.temperature, "dtype": str(policy.model.dtype), "argv": sys.argv[1:] if argv is None
           else list(argv), **res}
    print(json.dumps(res))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
