"""The judge J: runs a task's trusted parts and decides each test's outcome.

J is forked by W next to each candidate process C and never runs candidate code. It runs setup
(the task's imports and helper functions) itself, then each trusted test statement, with every
name the candidate must define (analysis.py: read by the test, bound neither by the test, nor
by setup, nor a builtin) bound to a Handle. Calling a Handle sends the call (its name and the
arguments, data the test itself computed) over a socket to the candidate-side process serving
this test (T_i, a fresh fork of C: child.py), which runs it and answers ONLY with plain data
(codec.py: exact builtin types, parsed here by a parser that executes nothing) or with a new
handle for what is not plain. The comparison (`== y`, `abs(...) < 1e-6`, `math.isclose`, the
test's loops and helpers) runs here, on data; the expected values never leave J.
Handles (what a candidate call returned that is not plain data: an instance, a generator):
calling one, reading an attribute, iterating (`list(h)`, `x in h`), len(), bool() and h[key]
are requests the candidate answers with data; comparing or hashing one raises TypeError (its
__eq__ would let candidate code decide). A candidate exception comes back as the
builtin exception class it derives from (AssertionError -> "failed", others -> "error", both
catchable by the test); a candidate process that ends mid-test makes the call raise
CandidateEnded. Arguments are copies: a list, dict or set argument the candidate mutated in
place is written back (its contents; nested objects become equal copies).
A test whose arguments are not plain data (a lambda, an iterator, an object of the test's own)
cannot be judged this way: J says "fallback" and W runs it inside the candidate, as before,
flagged untrusted. Names the candidate defines never shadow a builtin or a setup name here.
"""
import builtins, os

from . import analysis, codec, confine, frames

MAX_REPLY = 16 << 20
BUILTIN_NAMES = frozenset(dir(builtins))


class Untrustable(BaseException):
    """The test passed the candidate something that is not plain data (not an Exception: a
    test's `except Exception` must not swallow it)."""


class CandidateError(Exception):
    """A candidate exception of no builtin Exception class (SystemExit, a BaseException of its own)."""


class CandidateEnded(Exception):
    """The candidate's process ended (or sent garbage) while the test waited for it."""


def describe(exc):
    """First line of an exception as 'Type: message', at most 300 characters."""
    given = getattr(exc, "_cocos_text", None)
    if type(given) is str:
        return given
    try:
        text = str(exc).strip()
        line = f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
        return line[:300]
    except BaseException:
        return "exception (unprintable)"


def candidate_exception(name, base, text):
    """A judge-side exception standing for the candidate's `name` (a subclass of builtin `base`)."""
    cls = getattr(builtins, base, None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        cls = CandidateError
    if name != cls.__name__ and name.isidentifier() and len(name) <= 100:
        cls = type(name, (cls,), {"__module__": "candidate"})
    exc = cls(text)
    exc._cocos_text = text[:300]
    return exc


class Handle:
    """A name in the candidate's module, or an object that lives in the candidate process."""
    __slots__ = ("_chan", "_ref", "_kind")

    def __init__(self, chan, ref, kind):
        self._chan = chan
        self._ref = ref
        self._kind = kind

    def __call__(self, *args, **kwargs):
        return self._chan.call(self, args, kwargs)

    def __getattr__(self, name):
        if name in Handle.__slots__ or name.startswith("__"):
            raise AttributeError(name)
        return self._chan.ask(("G", self, name))

    def __iter__(self):
        items = self._chan.ask(("I", self))
        if type(items) is not list:
            raise TypeError("the candidate's iteration did not give a list")
        return iter(items)

    def __len__(self):
        n = self._chan.ask(("L", self))
        if type(n) is not int:
            raise TypeError("the candidate's len() is not an int")
        return n

    def __bool__(self):
        b = self._chan.ask(("B", self))
        if type(b) is not bool:
            raise TypeError("the candidate's bool() is not a bool")
        return b

    def __getitem__(self, key):
        return self._chan.ask(("[", self, key))

    def __eq__(self, other):
        raise TypeError(f"the judge does not compare candidate objects (a {self._kind})")

    __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __eq__
    __hash__ = None

    def __repr__(self):
        return f"<candidate {self._kind}>"


class Channel:
    """J's end of the socket to the process that serves the current test."""

    def __init__(self, fd):
        self.fd = fd
        self.reader = frames.Resync(fd, MAX_REPLY)
        self.handles = {}
        self.dead = None
        self.used = False
        self.fallback = False

    def reset(self, keep_handles):
        self.dead = None
        self.used = False
        self.fallback = False
        if not keep_handles:
            self.handles = {}

    def _ref(self, obj):
        if type(obj) is Handle and obj._chan is self:
            return obj._ref
        raise codec.NotPlain(f"not plain data: {type(obj).__name__}")

    def _handle(self, hid, kind):
        got = self.handles.get(hid)
        if got is None:
            got = self.handles[hid] = Handle(self, ("h", hid, kind), kind)
        return got

    def request(self, message):
        """Send one request; the reply tuple ("R", ...) (an "X" reply is raised)."""
        if self.dead:
            raise CandidateEnded(self.dead)
        try:
            payload = codec.encode(message, ref=self._ref)
        except codec.NotPlain as e:
            self.fallback = True
            raise Untrustable(str(e)) from None
        self.used = True
        frames.write_all(self.fd, frames.pack_marked(payload))
        while True:  # what does not decode to a reply is junk the candidate wrote: skipped
            data = self.reader.next()
            if data is None:
                self.dead = "the candidate's end of the channel closed"
                raise CandidateEnded(self.dead)
            try:
                reply = codec.decode(data, handle=self._handle)
            except codec.CodecError:
                continue
            kind = reply[0] if type(reply) is tuple and reply else None
            if kind == "R" and len(reply) == 3:
                return reply
            if kind == "X" and len(reply) == 4 and all(type(x) is str for x in reply[1:]):
                raise candidate_exception(*reply[1:])
            if kind == "gone" and len(reply) == 2 and type(reply[1]) is str:
                self.dead = reply[1]
                raise CandidateEnded(self.dead)

    def ask(self, message):
        return self.request(message)[1]

    def call(self, target, args, kwargs):
        _, value, mutated = self.request(("C", target, args, kwargs))
        if type(mutated) is tuple and len(mutated) == 2:
            write_back(args, mutated[0])
            write_back(kwargs, mutated[1])
        return value

    def end(self):
        """Tell the serving process this test is over (before the verdict goes to W): W told it
        to serve this test, so it waits for the word even when the test made no call."""
        if not self.dead:
            try:
                frames.write_all(self.fd, frames.pack_marked(codec.encode(("E",))))
            except OSError:
                pass


def write_back(originals, new):
    """Copy in-place mutations the candidate made to list/dict/set arguments into ours."""
    if type(new) not in (tuple, dict) or len(new) != len(originals):
        return
    pairs = zip(originals, new) if type(new) is tuple else ((originals[k], new[k]) for k in new if k in originals)
    for old, value in pairs:
        if type(old) is not type(value) or type(old) not in (list, dict, set):
            continue
        try:
            if old == value:
                continue
        except TypeError:  # candidate handles inside: leave as is
            continue
        old.clear()
        if type(old) is list:
            old.extend(value)
        else:
            old.update(value)


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
    return ("fallback", "") if chan.fallback else result


class Judgement:
    """One incarnation of a job as J sees it: setup run here, which tests it can judge, and
    the channel to the candidate's side (a fresh reader and handle table)."""

    def __init__(self, setup, tests, program_mode, fd):
        self.chan = Channel(fd)
        self.program_mode = program_mode
        self.plans = [analysis.plan(t, i) for i, t in enumerate(tests)]
        ns0 = {"__name__": "__candidate__"}
        self.error = None
        try:
            exec(analysis.setup_code(setup), ns0)
        except BaseException as e:
            self.error = describe(e)
        for name in analysis.setup_reads(setup) - ns0.keys() - BUILTIN_NAMES:
            ns0[name] = Handle(self.chan, ("n", name), f"name {name!r}")
        self.cands = [p.free - ns0.keys() - BUILTIN_NAMES for p in self.plans]
        self.trusted = tuple(isinstance(p.code, BaseException) or (p.local_ok and not p.touched & c)
                             for p, c in zip(self.plans, self.cands))
        calls_out = any(type(v) is Handle for v in ns0.values())
        self.needs = tuple(bool(c) or calls_out for c in self.cands)
        self.ns0 = ns0
        self.shared = dict(ns0)

    def test(self, i):
        """(outcome, message) of test i; the serving process is told the test is over."""
        self.chan.reset(keep_handles=self.program_mode)
        if self.error is not None:
            if self.needs[i]:
                self.chan.end()
            return "error", self.error
        plan = self.plans[i]
        ns = self.shared if self.program_mode else dict(self.ns0)
        lazy = plan.values & self.cands[i]
        for name in self.cands[i] - lazy:
            ns[name] = Handle(self.chan, ("n", name), f"function {name!r}")
        if lazy:
            ns = LazyNamespace(ns)
            ns.lazy = lazy
            ns.chan = self.chan
        outcome = run_one(plan.code, ns, self.chan)
        if self.program_mode and lazy:
            self.shared.update((k, v) for k, v in ns.items() if k not in lazy)
        if self.needs[i]:
            self.chan.end()
        return outcome


def main(cfg, fds):
    """J's life (one per worker generation, replaced after a timeout or its own end): fds =
    (commands from W, messages to W, its end of the socket to the candidate side). Messages:
    ("job", serial, dir, setup, tests, program_mode) -> ("ready", serial, setup error, trusted
    flags, needs-a-server flags); ("test", serial, i) -> ("verdict", serial, i, outcome, msg)."""
    for src, dst in zip(fds, (3, 4, 5)):
        os.dup2(src, dst)
    os.closerange(cfg["first_free_fd"], 1 << 16)
    if cfg["judge_view"]:
        confine.judge_view()  # its own /proc, IPC and mount namespaces
    if "uid" in cfg["active"]:
        confine.drop_uid(cfg["judge_uid"], cfg["judge_uid"])  # (a uid change also clears "dumpable")
    else:
        confine.prctl(confine.PR_SET_DUMPABLE, 0)  # no same-uid ptrace, no /proc/PID/mem
    if "userns" in cfg["active"]:
        confine.drop_caps()
    job = None
    while True:
        msg = frames.read_frame(3)
        if msg is None:
            os._exit(0)
        msg = codec.decode(msg)
        if msg[0] == "job":
            _, serial, path, setup, tests, program_mode = msg
            try:
                os.chdir(path)
            except OSError:  # the candidate made its dir unreadable: relative paths fail
                os.chdir("/")
            for key in ("HOME", "TMPDIR", "PWD"):
                os.environ[key] = path
            job = Judgement(setup, tests, program_mode, 5)
            reply = ("ready", serial, job.error, job.trusted, job.needs)
        else:
            _, serial, i = msg
            reply = ("verdict", serial, i) + job.test(i)
        frames.write_frame(4, codec.encode(reply))
