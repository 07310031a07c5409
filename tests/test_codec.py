"""The plain-data codec between the candidate and the judge: exact round trips, strict parsing."""
import collections, math, random

import pytest

from cocos_lib.executor.sandbox import codec, frames

PLAIN = [None, True, False, 0, -1, 7 ** 300, -(2 ** 70000), 1.5, -0.0, float("inf"), 1e-308, 1 + 2j, "",
         "h\u00e9\U0001f600", "\ud800", b"", b"\x00\xff", [], [1, [2, (3, "x")]], (), (None,), {}, {1: "a", (1, 2): [3]},
         set(), {1, 2, (3, "x")}, frozenset({frozenset({1})}), {"k": {"n": [None, {b"b"}]}}]


def same(a, b):
    """Equal and of exactly the same types all the way down (nan equals nan here)."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return a == b and math.copysign(1, a) == math.copysign(1, b) or a != a and b != b
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


@pytest.mark.parametrize("value", PLAIN + [float("nan")], ids=lambda v: type(v).__name__)
def test_plain_values_round_trip_exactly(value):
    assert same(codec.decode(codec.encode(value)), value)


def test_what_is_not_plain_needs_a_hook():
    for value in (object(), print, iter([1]), [1, object()], {object(): 1}, {frozenset([object()])}, bytearray(b"x")):
        with pytest.raises(codec.NotPlain):
            codec.encode(value)
    table = []

    def ref(obj):
        table.append(obj)
        return "h", len(table) - 1, type(obj).__name__

    data = codec.encode([print, {1: iter([])}, {print}, {(1, print): 0}], ref=ref)
    got = codec.decode(data, handle=lambda hid, kind: ("H", hid, kind))
    assert got == [("H", 0, "builtin_function_or_method"), {1: ("H", 1, "list_iterator")}, ("H", 2, "set"), ("H", 3, "dict")]


def test_stdlib_containers_travel_as_themselves_other_subclasses_as_their_base_type():
    import enum

    point = collections.namedtuple("point", "x y")
    values = [point(1, 2), collections.OrderedDict(a=1), collections.Counter("aab"), collections.defaultdict(int, a=1),
              collections.deque([1, 2], 3), True, 3, enum.IntEnum("E", "A B").B, type("S", (str,), {})("s")]
    got = [codec.decode(codec.encode(v, loose=True)) for v in values]
    assert got == [(1, 2), {"a": 1}, {"a": 2, "b": 1}, {"a": 1}, collections.deque([1, 2]), True, 3, 2, "s"]
    assert [type(g).__name__ for g in got] == ["point", "OrderedDict", "Counter", "defaultdict", "deque", "bool", "int",
                                               "int", "str"]
    assert got[0].x == 2 - 1 and got[0]._asdict() == {"x": 1, "y": 2} and got[0]._fields == ("x", "y")
    assert got[2].most_common(1) == [("a", 2)] and got[3]["missing"] == 0 and got[4].maxlen == 3
    assert codec.decode(codec.encode(point(1, [2]))) == (1, [2])  # (both ways: the judge sends them too)
    with pytest.raises(codec.CodecError, match="bad namedtuple"):
        codec.decode(codec.encode(collections.namedtuple("p", "x")(1)).replace(b"s1:x", b"s1:_"))


@pytest.mark.parametrize("data, why", [
    (b"i1_0;", "bad int"), (b"i 10;", "bad int"), (b"iff", "malformed"), (b"s5:ab", "truncated string"),
    (b"l99999:", "count larger than the data"), (b"x", "unknown tag"), (b"N N", "bytes after the value"),
    (b"S1:l0:", "malformed"), (b"d1:l0:N", "malformed"), (b"h1;i1;", "bad handle type name"), (b"n1:a", "name reference"),
    (b"s-1:", "bad length"), (b"f\x00", "malformed"), (b"", "malformed"), (b"t2:N", "count larger"),
    (b"t1:", "count larger"), (b"l1:i", "malformed"),
    (b"l1:" * 101 + b"N", "nested deeper"),
])
def test_malformed_bytes_are_refused(data, why):
    with pytest.raises(codec.CodecError, match=why):
        codec.decode(data, handle=lambda hid, kind: (hid, kind))


def test_random_bytes_never_give_anything_but_plain_data_or_a_codec_error():
    rng = random.Random(0)
    seeds = [codec.encode(v) for v in PLAIN]
    ok = 0
    for _ in range(3000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            if data and rng.random() < 0.7:
                data[rng.randrange(len(data))] = rng.randrange(256)
            else:
                data.insert(rng.randint(0, len(data)), rng.randrange(256))
        try:
            value = codec.decode(bytes(data))
        except codec.CodecError:
            continue
        ok += 1
        assert same(codec.decode(codec.encode(value)), value)  # whatever it gave back is plain data
    assert 100 < ok < 3000


def test_builtin_types_travel_by_name_and_nothing_else_does():
    assert codec.decode(codec.encode([int, (str, frozenset)])) == [int, (str, frozenset)]
    for value in (object, type, collections.OrderedDict, len):
        with pytest.raises(codec.NotPlain):
            codec.encode(value)
    with pytest.raises(codec.CodecError, match="unknown type"):
        codec.decode(b"y6:object")


def test_depth_is_bounded_both_ways():
    deep = []
    for _ in range(codec.MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(codec.NotPlain, match="deeper"):
        codec.encode(deep)
    with pytest.raises(codec.TooDeep, match="deeper"):  # (a TooDeep: the judge errors, never falls back)
        codec.encode(deep, ref=lambda o: (_ for _ in ()).throw(codec.NotPlain("no")))
    loop = []
    loop.append(loop)
    got = codec.decode(codec.encode(loop, ref=lambda o: ("h", 0, "list")), handle=lambda hid, kind: "H")
    for _ in range(codec.MAX_DEPTH):  # a self-containing list stays in the candidate past MAX_DEPTH
        got = got[0]
    assert got == "H"


def test_resync_skips_junk_between_marked_frames():
    import os

    r, w = os.pipe()
    os.write(w, b"junk\x00" + frames.pack_marked(b"one") + frames.MARK[:2] + b"more junk" + frames.MARK
             + b"\xff\xff\xff\xff" + frames.pack_marked(b"two"))
    os.close(w)
    reader = frames.Resync(r, limit=1 << 20)
    assert [reader.next(), reader.next(), reader.next()] == [b"one", b"two", None]
    os.close(r)
