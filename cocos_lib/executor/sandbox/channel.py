"""J's channel to the candidate's side of one incarnation, and the Handles it gives the test.

A name the candidate must define is a Handle in the test's namespace (judge.py). Calling a Handle
sends the call (its name and the arguments, data the test itself computed) over the
incarnation's own socket (a fresh pair, from W) to the candidate-side process serving this test
(T_i, a fresh fork of C: child.py), which runs it and answers ONLY with plain data (codec.py) or
with a new handle for what is not plain; requests and answers carry ids (RID bytes), so an
answer left over from an earlier request or test is dropped.
Handles (what a candidate call returned that is not plain data: an instance, a generator):
calling one, reading an attribute, iterating (`list(h)`, `next(h)`, `itertools.islice(h, n)`,
`x in h`; items come on demand, in chunks that double from 1 to CHUNK_MAX), len(), bool() and
h[key] are requests the candidate answers with data; comparing or hashing one raises TypeError
(its __eq__ would let candidate code decide). A candidate exception comes back as one of the
judge's (exceptions.py); a candidate process that ends mid-test makes the call raise CandidateEnded.
Arguments are copies: a list, dict or set argument the candidate mutated in place is written
back (its contents; nested objects become equal copies) only into an object the test owns:
one reachable from the test's own namespace (setup's objects included: fresh per test), never
one reachable only through a module (`f(sys.path)`), so no candidate write outlives its test.
"""
import os, sys

from . import codec, frames
from .exceptions import CandidateEnded, Untrustable, candidate_exception

MAX_REPLY = 256 << 20
RID = 8  # a request's id: the first bytes of a request and of its answer (child.RID)
GONE = b"\xff" * RID  # W's word that the process serving a test ended
END = bytes(RID) + codec.encode(("E",))
CHUNK_MAX = 256
OWNED_MAX = 200_000  # objects walked to find what a test owns (write-back only)


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

