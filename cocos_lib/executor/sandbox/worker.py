"""The sandbox worker W: a pristine, stdlib-only interpreter that runs model-written code.

Started per slot by cocos_lib/executor/pool.py as `python -I -S launch.py CONFIG_JSON` (the base
interpreter, no venv); it imports no project module and never torch. At start it confines
itself (cgroups.py; userns.py: a user namespace where it is not root; confine.py: namespaces;
rootfs.py: a root with the stdlib only; two pid namespaces with an init Z each), says hello with
the layers it got and its mode, then serves jobs:
  W (trusted: runs neither candidate nor test code) --fork--> Z (judge.py: the judge's zygote,
                                                                 one per generation, runs no task
                                                                 code; in the judge's pid namespace)
                                                    --fork--> C (child.py: the program, once per
                                                                 incarnation; in the candidates' one)
  Z --fork--> J, the judge: setup + the trusted verdicts, job after job
  C --fork--> T_i, one per test, which serves J's calls for test i (the last test: C itself; every
              trusted test of a program stateless.py finds stateless: C itself, no fork)
What a job owns (candidate.py: an Incarnation) dies with it: C, its channels, and per test a
fresh J <-> candidate socket pair; J is ended with it whenever it owes an answer (a test that
timed out, a job cut short), and Z forks a fresh one. Per test W sends C "serve i" and J
("test", serial, i), each with its end of the test's socket, and takes J's verdict within the
test's budget: timeout_s of CPU time, with a wall-clock backstop (the program's start-up has a
budget of its own). A test J cannot judge runs inside the candidate as before ("untrusted"; by
default its pass is not paid). No SIGALRM. After every test ("test" isolation) every process of
the job but C, Z, J and the program's own children is killed and what the test added to /tmp
removed; after a timeout or a crash C is replaced (the program runs again, and setup in J);
after the job everything but Z and J is killed, and /tmp is a fresh tmpfs unless it is empty. A
process that will not die within a few seconds makes W finish the job and exit: the parent
starts a new worker (new uids), and the kernel kills the old pid namespaces.
"""
import gc, json, os, select, shutil, sys

from . import confine, exceptions, frames, proctree, rootfs, startup
from .stateless import MEMORY_GROWTH_MB, stateless
from .budget import Budget, Clock
from .candidate import Incarnation
from .zygote import Zygote

# Loaded once for all candidates. Each makes every fork dearer: only cheap, common ones; never
# random or tempfile (random re-seeds itself in every forked child: +0.2 ms CPU per test).
PRELOAD = ("typing", "re", "collections", "math", "itertools", "functools", "heapq", "bisect", "string")


PAGE_MB = os.sysconf("SC_PAGE_SIZE") / (1 << 20)

UNTRUSTED_PASS = ("untrusted pass not counted: the test ran inside the candidate, which could have forged it "
                  "(Executor(untrusted='count') counts it)")


class Wedged(Exception):
    """A process of the job would not die: the worker must be replaced."""


class Worker:
    """W's state: config, its /proc view, its pid namespaces' inits (candidates', judge's; none
    without pid namespaces) and the fds of those namespaces, the judge's zygote, the CPU clock."""

    def __init__(self, cfg, proc, inits, judge_ns, clock):
        self.cfg = cfg
        self.proc = proc
        self.inits = inits
        self.init = inits[0] if inits else None
        self.judge_ns = judge_ns
        self.mountns = "mountns" in cfg["active"]
        self.clock = clock
        self.zygote = None
        self.judge = None
        self.serial = 0
        self.dirty = True

    def ensure_zygote(self):
        """The judge's zygote, forked anew if it is gone (its pidfd is readable once it ended)."""
        if self.zygote is not None and self.zygote.gone():
            zygote, self.zygote = self.zygote, None
            if not zygote.end():
                raise Wedged("the judge's zygote could not be reaped")
        if self.zygote is None and self.judge_ns is None:
            self.zygote = Zygote(self.cfg)
        elif self.zygote is None:  # forked into the judge's pid namespace
            confine.setns(self.judge_ns[0], confine.CLONE_NEWPID)
            try:
                self.zygote = Zygote(self.cfg)
            finally:
                confine.setns(self.judge_ns[1], confine.CLONE_NEWPID)
        return self.zygote

    def ensure_judge(self):
        """The judge J, a fresh one from Z if there is none or it is gone."""
        if self.judge is not None and (self.judge.gone or select.select([self.judge.fd], [], [], 0)[0]):
            self.end_judge()
        if self.judge is None:
            self.judge = self.ensure_zygote().fork_judge()
        return self.judge

    def end_judge(self):
        judge_, self.judge = self.judge, None
        if judge_ is not None and not judge_.end():
            raise Wedged("the judge would not end")

    def scratch(self):
        """A fresh, empty job directory (cwd, HOME, TMPDIR of the job's processes)."""
        if self.mountns:
            if self.dirty or os.listdir("/tmp"):
                rootfs.fresh_tmp(self.cfg["scratch_mb"])  # what the last job left is gone with the old tmpfs
                self.dirty = False
            path = "/tmp"
        else:
            path = os.path.join(self.cfg["tmp"], "job-" + os.urandom(8).hex())
            os.mkdir(path, 0o755)  # (the judge, another uid, reads and runs in it too)
            if "uid" in self.cfg["active"]:
                os.chown(path, self.cfg["uid"], self.cfg["uid"])
        os.chdir(path)
        for key in ("HOME", "TMPDIR", "PWD"):
            os.environ[key] = path
        return path

    def orphans(self):
        """Processes the job started that are no longer in C's tree (the inits' or W's children)."""
        roots = self.inits or [os.getpid()]
        return [p for r in roots for p in self.proc.children(r) if p not in self.inits]

    def sweep(self, inc, keep_c):
        """Kill every process of the job but J and, if keep_c, C and the children the program
        itself started (they live for the job, as in a fresh run); reap W's own zombies."""
        if keep_c and inc.ns_pids is not None and self.ns_pids() == inc.ns_pids:
            return  # the candidates' pid namespace holds exactly what it held after the program ran
        judge_pid = self.zygote.pid if self.zygote is not None else None  # (J is Z's child: not swept)
        keep = {inc.c, judge_pid} | inc.program_kids if keep_c else {judge_pid}

        def roots():
            mine = [p for p in self.proc.children(inc.c) if p not in keep] if keep_c else [inc.c]
            return mine + [p for p in self.orphans() if p not in (inc.c, judge_pid)]

        if not self.proc.sweep(roots, keep):
            raise Wedged("a process of the job would not die")
        if self.init is None:  # without a pid namespace, orphans are W's children: reap them
            for pid in self.proc.children(os.getpid()):
                if pid not in (inc.c, judge_pid) and self.proc.state(pid) in ("Z", None):
                    proctree.reap(pid, 0)

    def ns_pids(self):
        """The pids of the candidates' pid namespace (W's /proc is that namespace's), or None."""
        if self.init is None or not self.mountns:
            return None
        return {name for name in os.listdir("/proc") if name.isdigit()}

    def discard(self, inc):
        """Kill and reap C and everything else of this incarnation; end J if it owes an answer
        (a request W will not wait for: it must never answer a later one with it)."""
        ending = self.judge is not None and (self.judge.owes or self.judge.gone)
        if ending:
            self.judge.kill()  # (it dies while W sweeps C's tree)
        self.sweep(inc, keep_c=False)
        inc.reap_c(3.0)
        inc.close()
        if ending:
            self.end_judge()
        if inc.c not in inc.status:
            raise Wedged(f"process {inc.c} could not be reaped")

    def restore(self, path, baseline):
        """Remove what a test added to the job dir (the program's own files stay)."""
        for name in os.listdir(path):
            if name not in baseline:
                full = os.path.join(path, name)
                try:
                    if os.path.isdir(full) and not os.path.islink(full):
                        shutil.rmtree(full)
                    else:
                        os.unlink(full)
                except (OSError, RecursionError):
                    return False
        return True

    def run_job(self, setup, code, tests, timeout, isolation="test", entry_point=None, untrusted="refuse"):
        """(outcomes, first non-pass message, trusted flags); cleans everything up. An
        incarnation of C serves the tests until one times out or ends its process; then a fresh
        one runs the program (and J setup) again for the rest."""
        path = self.scratch()
        program, n = setup + "\n" + code, len(tests)
        program_mode = isolation == "program"
        # its trusted tests need no fork (stateless.py); a one-test job runs in C anyway: no check
        shares = not program_mode and n > 1 and stateless(program)
        outcomes, trusted, error, inc = [], [], None, None
        try:
            while len(outcomes) < n:
                i = len(outcomes)
                if inc is None:
                    if "ipcns" in self.cfg["active"]:
                        confine.unshare(confine.CLONE_NEWIPC)  # C inherits a fresh IPC namespace
                    self.serial += 1
                    inc = Incarnation(self.cfg, program, code, tests, setup, program_mode, entry_point,
                                      self.ensure_judge(), self.serial, path, self.clock)
                    bad = inc.start(Budget(timeout, self.clock))
                    if bad is not None and bad[0] == "error":
                        inc.await_ready(1.0)  # (J is not ended for a program that does not run)
                    if bad is not None:
                        kind, msg = bad
                        msg = msg or f"timeout after {timeout:.2f} s (running the program)"
                        return tuple(outcomes + [kind] * (n - i)), error or msg, tuple(trusted + [True] * (n - i))
                    baseline = set(os.listdir(path))
                    inc.program_kids = set(self.proc.children(inc.c))
                    inc.ns_pids = self.ns_pids()
                    rss0 = self.rss_mb(inc.c)
                in_c = program_mode or i == n - 1
                shared = not in_c and shares and inc.trusted is not None and inc.trusted[i]
                outcome, msg, judged = self.one_test(inc, i, Budget(timeout, self.clock), in_c or shared, in_c)
                if outcome == "void":  # C died under a forked test: the whole job is void
                    return ("error",) * n, msg, (True,) * n
                if outcome == "passed" and not judged and untrusted == "refuse":
                    outcome, msg = "error", UNTRUSTED_PASS
                outcomes.append(outcome)
                trusted.append(judged)
                if outcome != "passed" and error is None:
                    error = f"{msg} [test {i}]"
                if len(outcomes) == n:
                    break
                if outcome == "timeout" or inc.judge_dead or inc.c_dead or inc.stuck or (
                        shared and self.rss_mb(inc.c) - rss0 > MEMORY_GROWTH_MB):
                    self.discard(inc)  # (a test served in C that kept memory: the next one gets a fresh C)
                    inc = None
                elif not program_mode:
                    self.sweep(inc, keep_c=True)
                    if not self.restore(path, baseline):
                        self.discard(inc)
                        self.dirty = True
                        inc = None
            return tuple(outcomes), error, tuple(trusted)
        finally:
            if inc is not None:
                self.discard(inc)
            if not self.mountns:
                os.chdir("/")
                shutil.rmtree(path, ignore_errors=True)

    def one_test(self, inc, i, budget, serve_in_c, in_c):
        """(outcome, message, trusted) of test i. serve_in_c: C serves the judge's calls itself (the job's
        shared tests, stateless.py); in_c: a fallback test too runs in C (the last test, "program" isolation)."""
        if inc.trusted is None:  # J ended while running setup
            return "error", "the judge ended while running setup", True
        if inc.trusted[i]:
            outcome, msg = inc.trusted_test(i, budget, serve_in_c)
            if outcome != "fallback":
                return outcome, msg, True
            if not in_c:
                self.sweep(inc, keep_c=True)
        outcome, msg = inc.fallback_test(i, budget, in_c)
        return outcome, msg, outcome in ("void", "timeout")

    def rss_mb(self, pid):
        """Resident memory of a process in MiB (0 when it is gone)."""
        fields = self.proc.read(f"{pid}/statm").split()
        return int(fields[1]) * PAGE_MB if len(fields) > 1 else 0.0


def main():
    cfg = json.loads(sys.argv[1])
    req = os.dup(0)
    rsp = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    assert (req, rsp, devnull) == (3, 4, 5), "the worker expects fds 0-2 only at start"
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    proc, inits, judge_ns, layers, mode, stat_fd = startup.start(cfg)
    worker = Worker(cfg, proc, inits, judge_ns, Clock(proc, stat_fd))
    for name in PRELOAD:
        __import__(name)
    # the first compile() of a process builds the AST types (~1.3 ms, 2+ ms of copy-on-write in
    # a fork): pay it once here, not in every C
    compile("def f(x, *a, **k):\n    return [y for y in x if y], {1: f'{x!r}'}, lambda: (yield)\n"
            "assert f(1) == 2, 'm'\n", "<warm-up>", "exec")
    gc.collect()
    gc.freeze()  # no copy-on-write of the worker's objects by the children's collector
    missing = [k for k in confine.REQUIRED[mode] if layers.get(k) is not None]
    refuse = missing and not cfg["allow_unconfined"]
    frames.write_obj(rsp, ("hello", os.getpid(), layers, mode))
    while (msg := frames.read_obj(req)) is not None:
        job_id, setup, code, tests, timeout, isolation, entry_point, untrusted = msg
        wedged = False
        if refuse:
            result = (("error",) * len(tests), f"sandbox layers missing: {', '.join(missing)}", (True,) * len(tests))
        else:
            try:
                result = worker.run_job(setup, code, tests, timeout, isolation, entry_point, untrusted)
            except Wedged as e:
                result = (("error",) * len(tests), f"sandbox worker gave up: {e}", (True,) * len(tests))
                wedged = True
            except Exception as e:  # a bug here must not take the worker down silently
                result = (("error",) * len(tests), f"sandbox worker error: {exceptions.describe(e)}", (True,) * len(tests))
        frames.write_obj(rsp, (job_id,) + result)
        if wedged:
            break
    os._exit(0)  # the init's pipe closes: the kernel kills whatever is left in the namespace
