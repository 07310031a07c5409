"""Plain data between the candidate and the judge: a tagged byte format and a strict parser.

Plain data is a tree of exact builtin types: None, bool, int, float, complex, str, bytes, and
list, tuple, dict, set, frozenset of plain data (dict keys and set members plain and hashable).
`decode` builds nothing else: it never imports, calls, unpickles or evaluates anything it
reads, refuses a value nested deeper than MAX_DEPTH, and every count and length it reads is
checked against the bytes that are left (the frame that carries the bytes is size-bounded).

    value := N | T | F                       None, True, False
           | i <hex> ;                      int (hex: no 4300-digit limit), e.g. i-1f;
           | f <8 bytes>  | c <16 bytes>    float, complex (IEEE 754 big-endian: exact)
           | s <len> : <utf-8>              str (surrogates pass), b <len> : <bytes>
           | l|t|S|Z <n> : value*n          list, tuple, set, frozenset
           | d <n> : (value value)*n        dict
           | h <id> ; value(str)            a handle: an object that stays in the candidate
           | n <len> : <utf-8>              a name in the candidate's module (judge -> candidate)
           | o value(tuple)                 a stdlib container: (kind, extra, plain value), see _std
           | y <len> : <name>               a builtin type of TYPES (`f(xs, int)`, `type(f(x)) == str`)

Handles let the judge hold a candidate object (a function, a class instance) without seeing
inside it: `encode(x, ref=...)` turns what is not plain into `ref(x)`'s handle; `decode(b,
handle=...)` turns a handle back into `handle(id, type_name)`. Without those hooks a value that
is not plain raises NotPlain / CodecError. `loose=True` (the candidate's side) sends an
instance of a subclass of a plain type (a namedtuple, an OrderedDict, an IntEnum) as its base
type's plain value.
"""
import collections, functools, keyword, re, struct
# bound now, so that a program that patches builtins keeps its channel (see frames.py)
from builtins import (all, bytes, complex, dict, float, frozenset, getattr, int, isinstance, len, list,
                      range, set, slice, str, tuple, type, zip)

MAX_DEPTH = 100
MAX_INT_HEX = 1 << 28  # more hex digits than a frame holds (channel.MAX_REPLY): the frame bounds an int
FACTORIES = {t.__name__: t for t in (int, float, str, list, dict, set, tuple, bool, complex, bytes)}
TYPES = {t.__name__: t for t in (int, float, complex, str, bytes, bool, list, tuple, dict, set, frozenset)}
_D = struct.Struct(">d")
_DD = struct.Struct(">dd")
_HEX = re.compile(rb"-?[0-9a-f]+")
_SEQ_TAG = {list: b"l", tuple: b"t", set: b"S", frozenset: b"Z"}


class NotPlain(TypeError):
    """A value the format cannot carry (and no `ref` hook was given)."""


class CodecError(ValueError):
    """Bytes that are not a well-formed value."""


class TooDeep(NotPlain):
    """A value nested deeper than the format allows (and no `ref` hook took it): never a reason
    to judge a test another way (judge.py makes it an error)."""


class _Deep(NotPlain):
    """(inside encode: the depth limit was hit; the container above goes by `ref`, or TooDeep)"""


@functools.lru_cache(maxsize=256)
def named_tuple(name, fields):
    """The judge's namedtuple class for (name, field names), made by the stdlib from checked names."""
    if not (name.isidentifier() and not keyword.iskeyword(name) and len(fields) <= 256
            and all(type(f) is str and f.isidentifier() and not keyword.iskeyword(f) and not f.startswith("_")
                    for f in fields) and len(set(fields)) == len(fields)):
        raise CodecError("bad namedtuple")
    return collections.namedtuple(name, fields)


def _std(v):
    """(kind, extra, plain value) for a stdlib container `encode(loose=True)` sends as itself."""
    t = type(v)
    if isinstance(v, tuple) and t is not tuple:
        fields = getattr(t, "_fields", None)
        if type(fields) is tuple and all(type(f) is str for f in fields) and len(fields) == tuple.__len__(v):
            return "namedtuple", (str(t.__name__), fields), tuple(tuple.__iter__(v))
        return None
    if t is collections.OrderedDict or t is collections.Counter:
        return t.__name__, None, dict(dict.items(v))
    if t is collections.defaultdict:
        factory = v.default_factory
        name = next((k for k, f in FACTORIES.items() if f is factory), None)
        if factory is None or name is not None:
            return "defaultdict", name, dict(dict.items(v))
        return None
    if t is collections.deque:
        return "deque", v.maxlen, list(v)
    return None


def _build(kind, extra, value):
    """The judge-side object for a decoded "o" value."""
    if kind == "namedtuple" and type(extra) is tuple and len(extra) == 2 and type(value) is tuple:
        name, fields = extra
        if type(name) is str and type(fields) is tuple and len(fields) == len(value):
            return named_tuple(name, fields)(*value)
    if kind in ("OrderedDict", "Counter") and extra is None and type(value) is dict:
        return getattr(collections, kind)(value)
    if kind == "defaultdict" and (extra is None or extra in FACTORIES) and type(value) is dict:
        return collections.defaultdict(FACTORIES.get(extra), value)
    if kind == "deque" and (extra is None or type(extra) is int and extra >= 0) and type(value) is list:
        return collections.deque(value, extra)
    raise CodecError(f"bad stdlib value {kind!r}")


# ------------------------------------------------------------------ encoding
def encode(value, ref=None, loose=False) -> bytes:
    """The bytes of `value`. ref(obj) -> ("h", id, type name) | ("n", name) for what is not plain."""
    out = []
    _enc(value, out, ref, loose, 0)
    return b"".join(out)


def _base(v):
    """An instance of a subclass of a plain type as that exact type (None for anything else)."""
    if isinstance(v, int):
        return int.__int__(v)
    if isinstance(v, float):
        return float.__float__(v)
    if isinstance(v, complex):
        return complex(complex.real.__get__(v), complex.imag.__get__(v))
    if isinstance(v, str):
        return str.__str__(v)
    if isinstance(v, bytes):
        return bytes.__getitem__(v, slice(None))
    if isinstance(v, dict):
        return dict(dict.items(v))
    for base in (list, tuple, set, frozenset):
        if isinstance(v, base):
            return base(base.__iter__(v))
    return None


def _strict(value):
    """Whether `value` is plain all the way down (dict keys and set members must be)."""
    t = type(value)
    if value is None or t is bool or t is int or t is float or t is complex or t is str or t is bytes:
        return True
    if t is tuple or t is frozenset:
        return all(_strict(v) for v in value)
    return False


def _enc(v, out, ref, loose, depth):
    t = type(v)
    if t is str:
        b = v.encode("utf-8", "surrogatepass")
        out.append(b"s%d:" % len(b))
        out.append(b)
    elif t is int:
        out.append(b"i%x;" % v)
    elif v is None:
        out.append(b"N")
    elif v is True:
        out.append(b"T")
    elif v is False:
        out.append(b"F")
    elif t is float:
        out.append(b"f" + _D.pack(v))
    elif depth >= MAX_DEPTH:
        raise (TooDeep if ref is None else _Deep)(f"value nested deeper than {MAX_DEPTH} levels")
    elif t in _SEQ_TAG:
        mark = len(out)
        out.append(b"%s%d:" % (_SEQ_TAG[t], len(v)))
        try:
            for x in v:
                if t in (set, frozenset) and not _strict(x):
                    raise NotPlain("a set member that is not plain hashable data")
                _enc(x, out, ref, loose, depth + 1)
        except NotPlain as e:
            _instead(v, out, ref, mark, e)
    elif t is dict:
        mark = len(out)
        out.append(b"d%d:" % len(v))
        try:
            for k, x in v.items():
                if not _strict(k):
                    raise NotPlain("a dict key that is not plain hashable data")
                _enc(k, out, ref, loose, depth + 1)
                _enc(x, out, ref, loose, depth + 1)
        except NotPlain as e:
            _instead(v, out, ref, mark, e)
    elif t is complex:
        out.append(b"c" + _DD.pack(v.real, v.imag))
    elif t is bytes:
        out.append(b"b%d:" % len(v))
        out.append(v)
    elif t is type and TYPES.get(v.__name__) is v:
        name = v.__name__.encode()
        out.append(b"y%d:" % len(name))
        out.append(name)
    else:
        std = _std(v)
        if std is not None:
            mark = len(out)
            out.append(b"o")
            try:
                _enc(std, out, ref, loose, depth + 1)
            except NotPlain as e:
                _instead(v, out, ref, mark, e)
            return
        plain = _base(v) if loose else None
        if plain is not None:
            _enc(plain, out, ref, loose, depth)
        elif ref is None:
            raise NotPlain(f"not plain data: {t.__name__}")
        else:
            _ref(v, out, ref)


def _instead(v, out, ref, mark, e):
    """A container that could not go as data goes by `ref` (a handle), if the hook takes it; a
    depth limit nobody took becomes TooDeep."""
    if ref is None or isinstance(e, TooDeep):
        raise TooDeep(str(e)) if isinstance(e, _Deep) else e
    del out[mark:]
    try:
        _ref(v, out, ref)
    except NotPlain:
        if isinstance(e, _Deep):
            raise TooDeep(str(e)) from None
        raise


def _ref(v, out, ref):
    got = ref(v)  # raises NotPlain when the object may not be sent
    if got[0] == "n":
        b = got[1].encode("utf-8", "surrogatepass")
        out.append(b"n%d:" % len(b))
        out.append(b)
    else:
        out.append(b"h%d;" % got[1])
        _enc(str(got[2])[:200], out, None, False, 0)


# ------------------------------------------------------------------ decoding
def decode(data: bytes, handle=None, name=None):
    """The value in `data` (all of it); handle(id, type_name) / name(str) resolve references."""
    try:
        value, end = _dec(data, 0, handle, name, 0)
    except CodecError:
        raise
    except (IndexError, ValueError, TypeError, KeyError, OverflowError, RecursionError, MemoryError, struct.error) as e:
        raise CodecError(f"malformed value ({type(e).__name__})") from None
    if end != len(data):
        raise CodecError(f"{len(data) - end} bytes after the value")
    return value


def _count(data, i, stop):
    """(decimal number between i and the `stop` byte, index after it), at most 12 digits."""
    j = data.index(stop, i, i + 13)
    digits = data[i:j]
    if not digits.isdigit():
        raise CodecError("bad length")
    return int(digits), j + 1


def _dec(data, i, handle, name, depth):
    tag = data[i]
    i += 1
    if tag == 0x73 or tag == 0x62 or tag == 0x6E:  # s b n
        n, i = _count(data, i, b":")
        if i + n > len(data):
            raise CodecError("truncated string")
        raw = data[i:i + n]
        if tag == 0x62:
            return raw, i + n
        text = raw.decode("utf-8", "surrogatepass")
        if tag == 0x73:
            return text, i + n
        if name is None:
            raise CodecError("a name reference where none may be")
        return name(text), i + n
    if tag == 0x69:  # i
        j = data.index(b";", i, i + MAX_INT_HEX + 2)
        if not _HEX.fullmatch(data, i, j):
            raise CodecError("bad int")
        return int(data[i:j], 16), j + 1
    if tag == 0x4E:
        return None, i
    if tag == 0x54:
        return True, i
    if tag == 0x46:
        return False, i
    if tag == 0x66:
        return _D.unpack_from(data, i)[0], i + 8
    if tag == 0x63:
        re_, im = _DD.unpack_from(data, i)
        return complex(re_, im), i + 16
    if depth >= MAX_DEPTH:
        raise CodecError(f"nested deeper than {MAX_DEPTH} levels")
    if tag in (0x6C, 0x74, 0x53, 0x5A, 0x64):  # l t S Z d
        n, i = _count(data, i, b":")
        if n > len(data) - i:
            raise CodecError("count larger than the data")
        items = []
        for _ in range(2 * n if tag == 0x64 else n):
            v, i = _dec(data, i, handle, name, depth + 1)
            items.append(v)
        if tag == 0x6C:
            return items, i
        if tag == 0x74:
            return tuple(items), i
        if tag == 0x53:
            return set(items), i
        if tag == 0x5A:
            return frozenset(items), i
        return dict(zip(items[::2], items[1::2])), i
    if tag == 0x68:  # h
        j = data.index(b";", i, i + 21)
        digits = data[i:j]
        if not digits.isdigit() or handle is None:
            raise CodecError("bad handle")
        kind, i = _dec(data, j + 1, None, None, depth + 1)
        if type(kind) is not str:
            raise CodecError("bad handle type name")
        return handle(int(digits), kind), i
    if tag == 0x79:  # y
        n, i = _count(data, i, b":")
        got = TYPES.get(data[i:i + n].decode("ascii", "replace"))
        if got is None:
            raise CodecError("unknown type")
        return got, i + n
    if tag == 0x6F:  # o
        spec, i = _dec(data, i, handle, name, depth + 1)
        if type(spec) is not tuple or len(spec) != 3 or type(spec[0]) is not str:
            raise CodecError("bad stdlib value")
        return _build(*spec), i
    raise CodecError(f"unknown tag {tag:#x}")
