"""The judge: runs a task's trusted parts and decides each test's outcome.

Two kinds of process, neither of which ever runs candidate code:
  Z  the judge's zygote, one per worker generation, forked by W into the judge's pid namespace
     and confined there (its own mount, IPC and /proc view, its own uid). It runs no task code:
     it only forks J on two descriptors W sends and hands W a pidfd of it.
  J  the judge proper: runs setup and the trusted test statements, job after job. W ends it
     (and Z forks a fresh one) whenever it owes an answer W will not wait for: a test that
     timed out, a job cut short; so a J never waits for a reply that belongs to an old test.
Per test, J runs setup again into a fresh namespace ("program" isolation: once per
incarnation, the tests share it) and binds every name the candidate must define (analysis.py:
read by the test, bound neither by the test, nor by setup, nor a builtin) to a Handle (channel.py). Calling a
Handle sends the call (its name and the arguments, data the test itself computed) over the
incarnation's own socket (a fresh pair, from W) to the candidate-side process serving this
test (T_i, a fresh fork of C: child.py), which runs it and answers ONLY with plain data (codec.py:
exact builtin types and a few stdlib containers, parsed here by a parser that executes nothing)
or with a new handle for what is not plain. The comparison (`== y`, `abs(...) < 1e-6`,
`math.isclose`, the test's loops and helpers) runs here, on data; the expected values never
leave J.
Handles, the channel and write-back: channel.py; the candidate's exceptions: exceptions.py.
Which path a test takes is decided from the test's text (and setup's, and which names the
program's text defines) before it runs: a test the judge cannot run (analysis.py: it reaches
into candidate objects, or passes a lambda, a function, an iterator) says "fallback" and W runs
it inside the candidate, flagged untrusted. At run time nothing the candidate returns can move a
test there: a value that cannot be sent back makes the call raise (an "error", judged here).
Names the candidate defines never shadow a builtin or a setup name here (setup's helper, e.g. a
HumanEval prompt's `poly`, is setup's), except the task's entry point (a task whose function is
called `sum`); a test that reads another builtin the program defines a function or class of is
not judged here (fallback: real Python would call the program's).
"""
import builtins, importlib, os, socket

from . import analysis, codec, confine, frames
from .channel import Channel, Handle
from .exceptions import Untrustable, describe

BUILTIN_NAMES = frozenset(dir(builtins))
# stdlib modules a program's `import m` makes the judge import too (a test's `math.isclose` on
# it is judged): side-effect-free ones only; any other stays the candidate's name
JUDGE_IMPORTS = frozenset({
    "array", "bisect", "calendar", "cmath", "collections", "copy", "dataclasses", "datetime", "decimal", "enum",
    "fractions", "functools", "hashlib", "heapq", "itertools", "json", "math", "numbers", "operator", "os",
    "random", "re", "statistics", "string", "struct", "sys", "textwrap", "time", "typing", "unicodedata"})


class LazyNamespace(dict):
    """Test globals where the candidate's non-function names are fetched when first read."""
    __slots__ = ("lazy", "chan")

    def __missing__(self, key):
        if key in self.lazy:
            value = self.chan.request(("V", key))[1]
            self[key] = value
            return value
        raise KeyError(key)


def run_one(code, ns, chan):
    """(outcome, message) of one compiled test run in `ns`; "fallback" if it cannot be judged."""
    if isinstance(code, BaseException):
        return "error", describe(code)
    try:
        exec(code, ns)
        result = ("passed", "")
    except AssertionError as e:
        result = ("failed", describe(e))
    except Untrustable as e:
        result = ("fallback", str(e))
    except BaseException as e:
        result = ("error", describe(e))
    if chan.fallback:
        return "fallback", ""
    if chan.dead and chan.used:  # the candidate's process ended: nothing the test caught undoes that
        return "error", f"CandidateEnded: {chan.dead}"
    return result


class Judgement:
    """One incarnation of a job as J sees it: which tests it can judge, setup run afresh for
    each test, and the channel to the candidate's side."""

    def __init__(self, setup, code, tests, program_mode, entry_point, chan):
        self.chan = chan
        self.setup = setup
        self.program_mode = program_mode
        self.plans = [analysis.plan(t, i) for i, t in enumerate(tests)]
        defined, assigned, modules = analysis.top_level(code)
        self.modules = {} if program_mode else {  # ("program": the tests share the candidate's modules)
            k: v for k, v in modules.items() if k not in defined | assigned and v.split(".")[0] in JUDGE_IMPORTS}
        ns0, self.error = self.run_setup()
        self.entry = entry_point if entry_point in BUILTIN_NAMES and entry_point in defined else None
        self.extra = analysis.setup_reads(setup) - ns0.keys() - BUILTIN_NAMES
        shadowed = (defined & BUILTIN_NAMES) - {self.entry}  # (a function named like a builtin: MBPP/126)
        builtin = BUILTIN_NAMES - {self.entry}
        self.cands = [p.free - ns0.keys() - builtin for p in self.plans]
        self.trusted = tuple(isinstance(p.code, BaseException) or (p.local_ok and not (p.touched | p.gives) & c
                                                                   and not p.free & shadowed)
                             for p, c in zip(self.plans, self.cands))
        self.needs = tuple(bool(c) or bool(self.extra) for c in self.cands)
        self.fresh = ns0  # the first test's setup run; later ones run setup again
        self.shared = None

    def run_setup(self):
        """A fresh namespace with setup run in it (and the stdlib modules the program imports)."""
        ns = {"__name__": "__candidate__"}
        try:
            exec(analysis.setup_code(self.setup), ns)
        except BaseException as e:
            return ns, describe(e)
        for name, module in self.modules.items():
            if name not in ns:
                try:
                    ns[name] = importlib.import_module(module)
                except BaseException:  # not in the judge's stdlib root: the name stays the candidate's
                    pass
        return ns, None

    def namespace(self):
        """The test's globals: setup as if just run ("program": one run for all tests)."""
        if self.program_mode and self.shared is not None:
            return self.shared
        ns, self.fresh = (self.fresh, None) if self.fresh is not None else (self.run_setup()[0], None)
        for name in self.extra:
            ns[name] = Handle(self.chan, ("n", name), f"name {name!r}")
        if self.program_mode:
            self.shared = ns
        return ns

    def test(self, i):
        """(outcome, message) of test i (the serving process is told when it is over)."""
        ns = self.namespace() if self.error is None else {}
        self.chan.begin(i, ns, keep_handles=self.program_mode)
        try:
            if self.error is not None:
                return "error", self.error
            plan = self.plans[i]
            if not self.program_mode:
                ns = dict(ns)
            lazy = plan.values & self.cands[i]
            for name in self.cands[i] - lazy:
                ns[name] = Handle(self.chan, ("n", name), f"function {name!r}")
            if lazy:
                ns = LazyNamespace(ns)
                ns.lazy = lazy
                ns.chan = self.chan
            self.chan.ns = ns
            outcome = run_one(plan.code, ns, self.chan)
            if self.program_mode and lazy:
                self.shared.update((k, v) for k, v in ns.items() if k not in lazy)
            return outcome
        finally:
            if self.needs[i]:
                self.chan.finish()


def serve_jobs():
    """J: fd 3 W's commands (a unix socket: frames, an incarnation's socket riding on its job),
    fd 4 messages to W. ("job", serial, dir, setup, code, tests, program_mode, entry_point) ->
    ("ready", serial, setup error, trusted flags, needs-a-server flags); ("test", serial, i) ->
    ("verdict", serial, i, outcome, msg)."""
    commands = frames.FdReader(socket.socket(fileno=3))
    chan = Channel()
    job = None
    while (msg := commands.next()) is not None:
        msg = codec.decode(msg)
        if msg[0] == "job":
            chan.open((commands.take_fds(1) or [-1])[0])
            _, serial, path, setup, code, tests, program_mode, entry_point = msg
            try:
                os.chdir(path)
            except OSError:  # the candidate made its dir unreadable: relative paths fail
                os.chdir("/")
            for key in ("HOME", "TMPDIR", "PWD"):
                os.environ[key] = path
            job = Judgement(setup, code, tests, program_mode, entry_point, chan)
            reply = ("ready", serial, job.error, job.trusted, job.needs)
        else:
            _, serial, i = msg
            reply = ("verdict", serial, i) + job.test(i)
        frames.write_frame(4, codec.encode(reply))
    os._exit(0)


def main(cfg, fd):
    """Z's life (one per worker generation, replaced if it ends): fd, its socket to W, brings
    b"fork" with two descriptors (J's commands, J's messages to W); Z forks J on them and
    answers b"forked" with J's pidfd (and reaps the Js that ended)."""
    os.dup2(fd, 3)
    for x in {fd, 4, 5} - {3}:  # (W's own pipes to the parent are 4 and 5)
        os.close(x)
    os.closerange(cfg["first_free_fd"], 1 << 16)
    if cfg["judge_view"]:
        confine.judge_view()  # its own /proc, IPC and mount namespaces
    if "uid" in cfg["active"]:
        confine.drop_uid(cfg["judge_uid"], cfg["judge_uid"])  # (a uid change also clears "dumpable")
    else:
        confine.prctl(confine.PR_SET_DUMPABLE, 0)  # no same-uid ptrace, no /proc/PID/mem
    if "userns" in cfg["active"]:
        confine.drop_caps()
    sock = socket.socket(fileno=3)
    requests = frames.FdReader(sock)
    while requests.next() is not None:
        try:  # the Js W ended (reaped here, so their CPU time shows in Z's)
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass
        fds = requests.take_fds(2)
        if len(fds) != 2:
            os._exit(0)
        pid = os.fork()
        if pid == 0:
            try:
                os.dup2(fds[0], 3)
                os.dup2(fds[1], 4)
                for x in set(fds) - {3, 4}:
                    os.close(x)
                os.closerange(cfg["first_free_fd"], 1 << 16)
                serve_jobs()
            finally:
                os._exit(70)
        pidfd = os.pidfd_open(pid)
        frames.send_with_fds(sock, frames.pack(b"forked"), [pidfd])
        for x in (*fds, pidfd):
            os.close(x)
    os._exit(0)
