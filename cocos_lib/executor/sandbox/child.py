"""The code that runs in the candidate's processes: C (runs the program once) and T_i (one fork
of C's state per test, so every test sees the program as if just run).

Nothing here is trusted: a candidate can patch, read or bypass all of it. That is fine for the
trusted tests, decided by the judge: what C and T_i say can only fail or stall the candidate's
own tests. Only the fallback tests (those the judge cannot run, judge.py) are still run and
reported from in here, through the old nonce-checked channel, and flagged untrusted.

C, forked by W: fds 0-2 /dev/null, 3 W's commands (a unix socket W only writes: fixed-size
records), 4 lines to W, 5 the socket to the judge (fresh for this incarnation; W gave C a fresh
IPC namespace too). It
drops to the candidates' uid (or, in a user namespace, every capability), runs program =
setup + "\\n" + code as module __candidate__, says "ready", then obeys:
  serve i   read the judge's first request, fork T_i to answer it and the next ones until "E";
            then "reaped i status"
  sserve i  answer them in C itself (the last test in "test" isolation, any in "program")
  go i      fork T_i, which runs fallback test i and reports "@@T nonce i outcome msg" with the
            nonce W sends once the test has finished; then "reaped i status"
  run i     run fallback test i in C itself, likewise
Every incarnation has a socket of its own (W makes a fresh pair): whatever its processes do to
it (shut it down, set O_NONBLOCK, leave frames or descriptors queued) reaches no other job, and
within the job every request carries an id its answer must repeat (the judge drops the rest).
Requests (codec tuples): ("C", f, args, kwargs) call, ("G", obj, name) attribute, ("I", obj)
iter(obj) (as a handle), ("N", it, k) up to k more items of an iterator, ("L", obj) len, ("B",
obj) bool, ("[", obj, key) item, ("V", name) a global, ("E",) end. Answers: ("R", value,
mutated) with the post-call contents of list/dict/set arguments, ("X", *exc_info(e)), or
("big", size) for an answer larger than MAX_REPLY.
"""
import builtins, gc, os, select, sys, types

from . import codec, confine, frames

MAX_REPLY = 256 << 20  # (channel.MAX_REPLY: a larger answer is refused with its size)
REC = 64  # W -> C command records have this fixed size (atomic pipe writes, exact reads)
_fork, _exit, _read, _write, _getpid, _waitpid = os.fork, os._exit, os.read, os.write, os.getpid, os.waitpid
_setpgid, _wstatus, _freeze, _select = os.setpgid, os.waitstatus_to_exitcode, gc.freeze, select.select
# the harness code that runs after candidate code uses only these (a candidate may patch builtins)
_exec, _compile, _AssertionError, _BaseException = builtins.exec, builtins.compile, AssertionError, BaseException
_len, _int, _str, _type, _isinstance, _getattr = len, int, str, type, isinstance, getattr
_any, _bool, _id, _list, _tuple, _zip, _iter, _next = any, bool, id, list, tuple, zip, iter, next
MUTABLE = (list, dict, set)


def describe(exc):
    """First line of an exception as 'Type: message', at most 300 characters."""
    try:
        text = _str(exc).strip()
        line = f"{_type(exc).__name__}: {text.splitlines()[0]}" if text else _type(exc).__name__
        return _str(line)[:300]
    except _BaseException:
        return "exception (unprintable)"


def builtin_base(exc):
    """Name of the first builtin class in the exception's MRO (what the judge raises)."""
    for cls in _type(exc).__mro__:
        if _getattr(builtins, cls.__name__, None) is cls:
            return cls.__name__
    return "BaseException"


def _hex(text):
    return text.encode("utf-8", "backslashreplace").hex()


class Commands:
    """W's commands on fd 3 (a unix socket W only writes): fixed-size records."""

    def next(self):
        data = b""
        while _len(data) < REC:
            try:
                got = _read(3, REC - _len(data))
            except BlockingIOError:  # a test set O_NONBLOCK on this (shared) description: wait anyway
                _select([3], [], [])
                continue
            except OSError:
                _exit(71)
            if not got:
                _exit(71)
            data += got
        return data.decode().split()


class Table:
    """The objects this process handed the judge as handles, by handle id."""

    def __init__(self):
        self.objs = []
        self.ids = {}

    def ref(self, obj):
        hid = self.ids.get(_id(obj))
        if hid is None:
            hid = self.ids[_id(obj)] = _len(self.objs)
            self.objs.append(obj)
        return "h", hid, _type(obj).__name__

    def get(self, hid, kind):
        return self.objs[hid]


def answer(req, ns):
    """(value, mutated) for one decoded request."""
    op = req[0]
    if op == "C":
        _, fn, args, kwargs = req
        value = fn(*args, **kwargs)
        mut_args = _tuple(a if _type(a) in MUTABLE else None for a in args)
        mut_kwargs = {k: v for k, v in kwargs.items() if _type(v) in MUTABLE}
        return value, (mut_args, mut_kwargs) if mut_kwargs or _any(a is not None for a in mut_args) else None
    if op == "G":
        return _getattr(req[1], req[2]), None
    if op == "I":
        return _iter(req[1]), None
    if op == "N":
        return pull(req[1], req[2]), None
    if op == "L":
        return _len(req[1]), None
    if op == "B":
        return _bool(req[1]), None
    if op == "[":
        return req[1][req[2]], None
    if op == "V":
        if req[1] not in ns:
            raise NameError(f"name {req[1]!r} is not defined")
        return ns[req[1]], None
    raise ValueError(f"unknown request {op!r}")


def pull(it, k):
    """(up to k more items of iterator `it`, whether it ended, what it raised after them)."""
    items = []
    for _ in range(_int(k)):
        try:
            items.append(_next(it))
        except StopIteration:
            return items, True, None
        except _BaseException as e:
            if not items:
                raise
            return items, True, exc_info(e)
    return items, False, None


def _plain(value):
    try:
        codec.encode(value)
        return True
    except _BaseException:
        return False


def exc_info(e):
    """What the judge rebuilds a candidate exception from: (class name, builtin base, 'Type:
    message', MRO as (module, qualname) pairs, str(e), args if plain, plain attributes)."""
    mro = []
    for cls in _type(e).__mro__:
        mod, qual = _getattr(cls, "__module__", ""), _getattr(cls, "__qualname__", "")
        if _type(mod) is _str and _type(qual) is _str:
            mro.append((mod[:200], qual[:200]))
    try:
        message = _str(e)[:1 << 20]
    except _BaseException:
        message = ""
    args = e.args if _type(e.args) is _tuple and _plain(e.args) else None
    attrs = {}
    try:
        for k, v in _list(_getattr(e, "__dict__", {}).items())[:32]:
            if _type(k) is _str and _plain(v):
                attrs[k] = v
    except _BaseException:
        attrs = {}
    return (_str(_type(e).__name__), builtin_base(e), describe(e), _tuple(mro[:32]), message, args, attrs)


RID = 8  # a request's id: its first 8 bytes
END = bytes(RID) + codec.encode(("E",))


def decoded(data, ns, table):
    """(request id, the request decoded here (names resolved in `ns`) or the exception to answer
    with). A request is its id (RID bytes) and a codec value; the answer carries the same id."""

    def lookup(name):
        if name not in ns:
            raise NameError(f"name {name!r} is not defined")
        return ns[name]

    try:
        return data[:RID], codec.decode(data[RID:], handle=table.get, name=lookup)
    except _BaseException as e:
        return data[:RID], e


def reply(fd, request, ns, table):
    """Run one decoded request and send the answer (with the request's id)."""
    rid, req = request
    try:
        if _isinstance(req, _BaseException):
            raise req
        value, mutated = answer(req, ns)
        out = ("R", value, mutated)
    except _BaseException as e:
        out = ("X",) + exc_info(e)
    try:
        payload = codec.encode(out, ref=table.ref, loose=True)
    except _BaseException as e:
        payload = codec.encode(("X",) + exc_info(ValueError(f"result not sendable: {describe(e)}")))
    if _len(payload) > MAX_REPLY:
        payload = codec.encode(("big", _len(payload)))
    try:
        frames.write_all(fd, frames.pack_marked(rid + payload))
    except OSError:
        pass


def serve(reader, ns, table, first=None):
    """Answer the judge's requests (from `reader`, a Resync on fd 5: kept across calls, it may
    hold the next test's request already) until it says "E" or closes its end (then return,
    C; exit, T_i). `first`: a request C already read and decoded before
    forking this T_i (a fresh fork pays for every page it writes: decoding in C, whose pages
    are its own by then, is cheaper)."""
    if first is not None:
        reply(reader.fd, first, ns, table)
    while True:
        data = reader.next()
        if data is None:
            _exit(0)
        if data == END:
            return
        reply(reader.fd, decoded(data, ns, table), ns, table)


def run_fallback(test, ns):
    """(outcome, message) of one fallback test statement run in namespace `ns`."""
    try:
        _exec(_compile(test, "<test>", "exec"), ns)
        return "passed", ""
    except _AssertionError as e:
        return "failed", describe(e)
    except _BaseException as e:
        return "error", describe(e)


def report_fallback(i, test, ns, commands):
    """Run fallback test i, then read its nonce (only now) and report it on fd 4."""
    me = _getpid()
    outcome, msg = run_fallback(test, ns)
    if _getpid() != me:  # a fork made by the test itself: never reports
        _exit(0)
    kind, nonce = (commands.next() + ["", ""])[:2]
    if kind == "nonce":
        _write(4, f"@@T {nonce} {i} {outcome} {_hex(msg)}\n".encode())


def candidate_main(cfg, program, tests, fds, ctag):
    """C: confine, run setup + code once, then obey W's commands (see the module docstring)."""
    me = _getpid()

    def say(text):
        _write(4, ctag + text.encode() + b"\n")

    os.setpgid(0, 0)
    for src, dst in _zip((5,) + fds, (2, 3, 4, 5)):  # W's fd 5 is /dev/null
        os.dup2(src, dst)
    os.closerange(cfg["first_free_fd"], 1 << 16)
    if "uid" in cfg["active"]:
        confine.drop_uid(cfg["uid"], cfg["uid"])
    if "userns" in cfg["active"]:
        confine.drop_caps()  # (the uid is the worker's: no capability is left to candidate code)
    module = types.ModuleType("__candidate__")
    sys.modules["__candidate__"] = sys.modules["__main__"] = module  # hide this harness
    ns = module.__dict__
    try:
        _exec(_compile(program, "<candidate>", "exec"), ns)
    except _BaseException as e:
        if _getpid() == me:
            say(f"codeerror {_hex(describe(e))}")
        _exit(0)
    if _getpid() != me:
        _exit(0)
    _freeze()  # the tests' collector never walks (and copies) the program's objects
    say("ready")
    table = Table()
    commands = Commands()
    reader = frames.Resync(5)
    while True:
        cmd = commands.next()
        if cmd[0] not in ("serve", "sserve", "go", "run"):
            continue
        i = _int(cmd[1])
        if cmd[0] == "sserve":
            serve(reader, ns, table)
            continue
        if cmd[0] == "run":
            report_fallback(i, tests[i], ns, commands)
            continue
        first = None
        if cmd[0] == "serve":
            data = reader.next()
            if data is None:
                _exit(0)
            if data == END:  # the test made no call
                say(f"reaped {i} 0")
                continue
            first = decoded(data, ns, Table())
        pid = _fork()
        if pid == 0:
            _setpgid(0, 0)  # killpg(getpgid(0)) ends this test, not C
            if cmd[0] == "serve":
                serve(reader, ns, Table(), first)
            else:
                report_fallback(i, tests[i], ns, commands)
            _exit(0)
        _, status = _waitpid(pid, 0)
        say(f"reaped {i} {_wstatus(status)}")
