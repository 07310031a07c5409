"""How much a batch of rollouts can teach: unequal groups, edits, repairs and breakages among corrections.

RLOO learns only from groups whose k returns differ: with one shared turn 1 per prompt (the released
setting) R differs inside a group only through r_2, so a group teaches nothing when its k corrections
all score the same. Before sizing a run, measure how often that happens (`measure`), and while it runs
log what the corrections do (`correction_stats`, a part of every metrics.jsonl line):

    edit      share of turn-2 samples whose code differs from the turn-1 code they correct
    i2c, c2i  share of turn-2 samples that repair a wrong turn 1 (all tests fail -> pass) / break a right one
    unequal   share of groups whose k turn-2 rewards are not all equal (1 - rl's equal_groups)

    python -m cocos_lib.learning_signal --tasks mbpp-train --n 48 --k 8 --out data/results/real/signal.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

from cocos_lib.rollout import Trajectory


def correction_stats(trajs: Sequence[Trajectory], turn: int = 2) -> dict:
    """edit / i2c / c2i among the samples' turn `turn` against turn `turn - 1` (fractions of all samples)."""
    pairs = [(tr.turns[turn - 2], tr.turns[turn - 1]) for tr in trajs if len(tr.turns) >= turn]
    if not pairs:
        return {}
    n = len(pairs)
    return {f"edit_t{turn}": sum(a.code.strip() != b.code.strip() for a, b in pairs) / n,
            f"i2c_t{turn}": sum(not a.report.all_passed and b.report.all_passed for a, b in pairs) / n,
            f"c2i_t{turn}": sum(a.report.all_passed and not b.report.all_passed for a, b in pairs) / n}


def unequal_share(trajs: Sequence[Trajectory], k: int, turn: int = 2) -> float:
    """Share of groups (consecutive blocks of the first `k` samples of each group) whose turn-`turn` rewards differ."""
    groups: dict[int, list[float]] = {}
    for tr in trajs:
        if tr.sample < k:
            groups.setdefault(tr.group, []).append(tr.turns[turn - 1].reward)
    return sum(len(set(r)) > 1 for r in groups.values()) / max(len(groups), 1)


def summarise(trajs: Sequence[Trajectory], ks: Sequence[int]) -> dict:
    """Per k in `ks` (each <= the rollout's k): the unequal-group share using each group's first k samples;
    plus correction_stats over every sample and turn-1 accuracy over the groups."""
    firsts = [tr for tr in trajs if tr.sample == 0]
    return {"groups": len(firsts), "samples": len(trajs),
            "acc_t1": sum(tr.turns[0].report.all_passed for tr in firsts) / max(len(firsts), 1),
            **correction_stats(trajs), "unequal_by_k": {str(k): unequal_share(trajs, k) for k in ks}}


def measure(policy, tasks, rcfg, executor, ks: Sequence[int], seed: int = 0, progress: bool = True) -> dict:
    """Roll out `tasks` with rcfg (k = max(ks), shared turn 1) and summarise what the groups could teach."""
    from cocos_lib.rollout import rollout
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
    import dataclasses
    import random
    import torch
    from cocos_lib.config import make_config
    from cocos_lib.executor import open_executor
    from cocos_lib.models import describe_dtype
    from cocos_lib.task_sets import load_tasks
    from cocos_lib.train import load_models, rollout_config
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
