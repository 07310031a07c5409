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
read by the test, bound neither by the test, nor by setup, nor a builtin) to a Handle. Calling a
Handle sends the call (its name and the arguments, data the test itself computed) over the
incarnation's own socket (a fresh pair, from W) to the candidate-side process serving this
test (T_i, a fresh fork of C: child.py), which runs it and answers ONLY with plain data (codec.py:
exact builtin types and a few stdlib containers, parsed here by a parser that executes nothing)
or with a new handle for what is not plain. The comparison (`== y`, `abs(...) < 1e-6`,
`math.isclose`, the test's loops and helpers) runs here, on data; the expected values never
leave J.
Handles (what a candidate call returned that is not plain data: an instance, a generator):
calling one, reading an attribute, iterating (`list(h)`, `next(h)`, `itertools.islice(h, n)`,
`x in h`; items come on demand, in chunks that double from 1 to CHUNK_MAX), len(), bool() and
h[key] are requests the candidate answers with data; comparing or hashing one raises TypeError
(its __eq__ would let candidate code decide). A candidate exception comes back as an exception
of the most derived class of its MRO the judge has too (a stdlib class of a module the judge
imported, e.g. json.JSONDecodeError, or the builtin one), under the candidate's class name,
with its args, its plain attributes, and str() = the candidate's message: `except
json.JSONDecodeError` catches it, `except Exception` does not catch a SystemExit. A candidate
process that ends mid-test makes the call raise CandidateEnded, which no `except` of the test
can turn into a pass: the test is an "error" whatever it catches (as when a real process ends).
Arguments are copies: a list, dict or set argument the candidate mutated in place is written
back (its contents; nested objects become equal copies) only into an object the test owns:
one reachable from the test's own namespace (setup's objects included: fresh per test), never
one reachable only through a module (`f(sys.path)`), so no candidate write outlives its test.
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
import builtins, importlib, os, socket, sys

from . import analysis, codec, confine, frames

MAX_REPLY = 256 << 20
RID = 8  # a request's id: the first bytes of a request and of its answer (child.RID)
GONE = b"\xff" * RID  # W's word that the process serving a test ended
END = bytes(RID) + codec.encode(("E",))
CHUNK_MAX = 256
BUILTIN_NAMES = frozenset(dir(builtins))
# stdlib modules a program's `import m` makes the judge import too (a test's `math.isclose` on
# it is judged): side-effect-free ones only; any other stays the candidate's name
JUDGE_IMPORTS = frozenset({
    "array", "bisect", "calendar", "cmath", "collections", "copy", "dataclasses", "datetime", "decimal", "enum",
    "fractions", "functools", "hashlib", "heapq", "itertools", "json", "math", "numbers", "operator", "os",
    "random", "re", "statistics", "string", "struct", "sys", "textwrap", "time", "typing", "unicodedata"})
OWNED_MAX = 200_000  # objects walked to find what a test owns (write-back only)
_SKIP_MODULES = ("sandbox", "__candidate__", "__main__", "candidate")


class Untrustable(BaseException):
    """The test passed the candidate something that is not plain data (not an Exception: a
    test's `except Exception` must not swallow it)."""


class CandidateEnded(BaseException):
    """The candidate's process ended (or sent garbage) while the test waited for it (a
    BaseException, as a process's end is nothing a test can catch; the verdict says "error"
    even if the test catches it)."""


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


def _candidate_str(self):
    return self._cocos_message


def _resolve(mro):
    """The most derived exception class in the candidate's MRO [(module, qualname), ...] that
    exists here: a builtin, or a class of a module the judge has imported (never the judge's own)."""
    if type(mro) is not tuple:
        return BaseException
    for item in mro:
        if type(item) is not tuple or len(item) != 2 or not all(type(x) is str for x in item):
            continue
        mod, qual = item
        if mod.startswith(_SKIP_MODULES) or "<" in qual or mod not in sys.modules:
            continue
        obj = sys.modules[mod]
        for part in qual.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, type) and issubclass(obj, BaseException) and obj not in (Untrustable, CandidateEnded):
            return obj
    return BaseException


_classes = {}


def candidate_exception(info):
    """A judge-side exception standing for the candidate's (info: see child.exc_info)."""
    name, base, text, mro, message, args, attrs = info
    cls = _resolve(mro)
    if cls is BaseException:
        got = getattr(builtins, base, None)
        cls = got if isinstance(got, type) and issubclass(got, BaseException) else BaseException
    name = name if name.isidentifier() and len(name) <= 100 else cls.__name__
    key = (name, cls)
    sub = _classes.get(key)
    if sub is None:
        if len(_classes) > 1024:
            _classes.clear()
        sub = _classes[key] = type(name, (cls,), {"__module__": cls.__module__, "__str__": _candidate_str})
    args = args if type(args) is tuple else (message,)
    try:
        exc = sub(*args)
    except Exception:
        exc = sub.__new__(sub)
        exc.args = args
    for k, v in (attrs.items() if type(attrs) is dict else ()):
        try:
            setattr(exc, k, v)
        except Exception:
            pass
    exc._cocos_message = message
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
        it = self._chan.ask(("I", self))
        if type(it) is not Handle:
            raise TypeError("the candidate's iter() did not give an iterator")
        return Pull(it)

    def __next__(self):
        items, done, exc = self._chan.pull(self, 1)
        if items:
            return items[0]
        if exc is not None:
            raise exc
        raise StopIteration

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


class Pull:
    """The judge's side of iterating over a candidate iterator: items fetched in chunks of 1, 2,
    4, .. CHUNK_MAX (so `next()` and `islice(gen(), n)` of an endless generator stay cheap and
    end); an exception the iterator raised comes after the items before it."""

    def __init__(self, it):
        self.it = it
        self.buf = []
        self.k = 1
        self.done = False
        self.exc = None

    def __iter__(self):
        return self

    def __next__(self):
        if not self.buf and not self.done:
            items, self.done, self.exc = self.it._chan.pull(self.it, self.k)
            self.buf = items[::-1]
            self.k = min(2 * self.k, CHUNK_MAX)
        if self.buf:
            return self.buf.pop()
        if self.exc is not None:
            exc, self.exc = self.exc, None
            raise exc
        raise StopIteration


class Channel:
    """J's end of the socket to the candidate's side of one incarnation (a fresh socket per
    incarnation: open(fd) .. close()), used test by test (begin(i, ns) .. finish()). Every request
    carries an id (RID bytes) the answer must repeat: an answer left over from an earlier request
    or test (a candidate may write several) is dropped, as is a "gone" of another test."""

    def __init__(self):
        self.fd = -1
        self.reader = None
        self.handles = {}
        self.rid = 0
        self.test = None
        self.dead = None
        self.used = False
        self.fallback = False
        self.ns = None

    def open(self, fd):
        self.close()
        self.fd = fd
        self.reader = frames.Resync(fd, MAX_REPLY) if fd >= 0 else None
        self.handles = {}

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = -1
        self.reader = None

    def begin(self, i, ns, keep_handles):
        self.test = i
        self.dead = None if self.fd >= 0 else "no channel to the candidate"
        self.used = False
        self.fallback = False
        self.ns = ns
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
        except codec.TooDeep as e:  # (the candidate can nest its values: never a reason to fall back)
            raise ValueError(f"argument not sendable to the candidate: {e}") from None
        except codec.NotPlain as e:  # the test's own value (the candidate's always go back)
            self.fallback = True
            raise Untrustable(str(e)) from None
        self.used = True
        self.rid += 1
        rid = self.rid.to_bytes(RID, "big")
        try:
            frames.write_all(self.fd, frames.pack_marked(rid + payload))
        except OSError:
            self.dead = "the candidate's end of the channel closed"
            raise CandidateEnded(self.dead) from None
        while True:  # what does not decode to this request's answer is junk: skipped
            try:
                data = self.reader.next()
            except OSError:
                data = None
            if data is None:
                self.dead = "the candidate's end of the channel closed"
                raise CandidateEnded(self.dead)
            if data[:RID] != rid and data[:RID] != GONE:
                continue
            try:
                reply = codec.decode(data[RID:], handle=self._handle)
            except codec.CodecError as e:
                if data[:RID] == GONE:
                    continue
                raise ValueError(f"the candidate's answer could not be read: {e}") from None
            kind = reply[0] if type(reply) is tuple and reply else None
            if kind == "R" and len(reply) == 3:
                return reply
            if kind == "X" and len(reply) == 8 and all(type(x) is str for x in reply[1:4]) \
                    and type(reply[5]) is str:
                raise candidate_exception(reply[1:])
            if kind == "gone" and len(reply) == 3 and reply[1] == self.test and type(reply[2]) is str:
                self.dead = reply[2]
                raise CandidateEnded(self.dead)
            if kind == "big" and len(reply) == 2 and type(reply[1]) is int:
                raise ValueError(f"the candidate's answer is {reply[1]} bytes, more than the channel carries "
                                 f"({MAX_REPLY} bytes)")
            if data[:RID] == rid:  # (this request's, but no answer: never a silent wait)
                raise ValueError("the candidate's answer could not be read: not an answer")

    def ask(self, message):
        return self.request(message)[1]

    def pull(self, it, k):
        """(items, done, exception or None) of up to k more items of candidate iterator `it`."""
        got = self.ask(("N", it, k))
        if type(got) is not tuple or len(got) != 3 or type(got[0]) is not list or type(got[1]) is not bool:
            raise TypeError("the candidate's iterator did not answer with items")
        items, done, exc = got
        if exc is not None:
            if type(exc) is not tuple or len(exc) != 7:
                raise TypeError("the candidate's iterator did not answer with items")
            exc = candidate_exception(exc)
        return items, done or exc is not None, exc

    def call(self, target, args, kwargs):
        _, value, mutated = self.request(("C", target, args, kwargs))
        if type(mutated) is tuple and len(mutated) == 2:
            owned = owned_ids(self.ns)
            write_back(args, mutated[0], owned)
            write_back(kwargs, mutated[1], owned)
        return value

    def finish(self):
        """Tell the serving process this test is over (W told it to serve this test, so it
        waits for the word even when the test made no call)."""
        if self.fd >= 0 and not self.dead:
            try:
                frames.write_all(self.fd, frames.pack_marked(END))
            except OSError:
                pass


def owned_ids(ns):
    """ids of the objects a test owns: reachable from its namespace through containers and
    instances' attributes, never through a module, a class or a function (bounded walk)."""
    seen = set()
    todo = [v for v in (ns.values() if ns is not None else ()) if type(v) is not Handle]
    while todo and len(seen) < OWNED_MAX:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        t = type(obj)
        if t in (list, tuple, set, frozenset):
            seen.add(id(obj))
            todo.extend(x for x in obj if type(x) is not Handle)
        elif t is dict:
            seen.add(id(obj))
            todo.extend(x for x in obj.values() if type(x) is not Handle)
        elif t is not Handle and not isinstance(obj, (type, type(sys), type(owned_ids), type(len))) \
                and isinstance(getattr(obj, "__dict__", None), dict):
            seen.add(id(obj))
            todo.extend(x for x in vars(obj).values() if type(x) is not Handle)
    return seen


def write_back(originals, new, owned):
    """Copy in-place mutations the candidate made to list/dict/set arguments into ours (the
    ones the test owns)."""
    if type(new) not in (tuple, dict) or len(new) != len(originals):
        return
    pairs = zip(originals, new) if type(new) is tuple else ((originals[k], new[k]) for k in new if k in originals)
    for old, value in pairs:
        if type(old) is not type(value) or type(old) not in (list, dict, set) or id(old) not in owned:
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
