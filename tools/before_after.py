"""Paired before/after comparison of two evaluations of the same tasks (base model, trained adapter).

    python tools/before_after.py BEFORE.jsonl AFTER.jsonl --out data/results/real/cocos_cpu/before_after_mbpp.json
        [--note "how BEFORE and AFTER were made"] [--n-boot 10000] [--seed 0]

BEFORE / AFTER: `python -m cocos_lib.evaluate --out FILE` outputs (greedy, sample 0, turns 1-2). The JSON holds
`paired` (cocos_lib.summary.paired_differences: per metric before, after, diff and its 95% paired bootstrap
interval, tasks resampled), `summary_before` / `summary_after` (cocos_lib.summary.summarize), the tasks both cover,
the inputs' names and sha256, and the notes. README's `cpu-before-after-*` tables are generated from it.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cocos_lib.summary import paired_differences, summarize  # noqa: E402  (the repo root on sys.path first)


def read_rows(path: str | Path) -> pd.DataFrame:
    """An evaluate --out JSONL as a DataFrame; a one-line error naming the file when it is not one."""
    path = Path(path)
    try:
        df = pd.read_json(path, lines=True)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"before_after: {path}: not an evaluation JSONL ({e})") from None
    missing = {"task_id", "sample", "turn", "correct", "edit_distance"} - set(df.columns)
    if missing or not {1, 2} <= set(df["turn"]):
        raise SystemExit(f"before_after: {path}: needs turns 1 and 2 and the columns "
                         f"task_id, sample, turn, correct, edit_distance (missing: {sorted(missing) or 'turn 2'})")
    return df


def compare(before: str | Path, after: str | Path, n_boot: int = 10_000, seed: int = 0,
            notes: list[str] | None = None) -> dict:
    a, b = read_rows(before), read_rows(after)
    tasks = sorted(set(a["task_id"]) & set(b["task_id"]))
    a, b = a[a["task_id"].isin(tasks)], b[b["task_id"].isin(tasks)]
    return {"paired": paired_differences(a, b, n_boot=n_boot, seed=seed),
            "summary_before": summarize(a), "summary_after": summarize(b), "n_tasks": len(tasks),
            "inputs": {"before": Path(before).name, "after": Path(after).name,
                       "sha256_before": hashlib.sha256(Path(before).read_bytes()).hexdigest(),
                       "sha256_after": hashlib.sha256(Path(after).read_bytes()).hexdigest()},
            "n_boot": n_boot, "seed": seed, "notes": list(notes or [])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--out", required=True)
    p.add_argument("--note", action="append", default=[], help="a line saying how the inputs were made (repeatable)")
    p.add_argument("--n-boot", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    res = compare(args.before, args.after, args.n_boot, args.seed, args.note)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    for name, d in res["paired"].items():
        print(f"{name:>13}: {100 * d['before']:5.1f} -> {100 * d['after']:5.1f}  "
              f"diff {100 * d['diff']:+5.1f}  95% CI [{100 * d['lo']:+.1f}, {100 * d['hi']:+.1f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
