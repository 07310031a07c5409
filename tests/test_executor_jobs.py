"""What a job owns, and that nothing of it outlives its test or its job (issue 25): for each
class, the exact verdicts, then that the next job on the same worker gets exactly the verdicts
a fresh executor gives. One 1-worker executor runs them all in a row, as a long RL run would."""
import os, random, socket

import pytest

from cocos_lib.executor import Executor, Job
from cocos_lib.executor.sandbox import channel, child, frames

ADD = "def add(a, b):\n    return a + b\n"
WRONG = "def add(a, b):\n    return a - b\n"
CHECKS = ("assert add(1, 2) == 3", "assert add(2, 2) == 4", "assert add(0, 0) == 0")
PROBES = [Job(ADD, CHECKS), Job(WRONG, CHECKS), Job(ADD, CHECKS, setup="import sys\nL = [1]"),
          Job(ADD, ["import sys\nassert 9 not in sys.path", "assert L == [1]"], setup="L = [1]")]
FRESH = [("passed",) * 3, ("failed", "failed", "passed"), ("passed",) * 3, ("passed",) * 2]
UNPAID = ("untrusted pass not counted: the test ran inside the candidate, which could have forged it "
          "(Executor(untrusted='count') counts it)")


@pytest.fixture(scope="module")
def ex1():
    with Executor(workers=1) as e:
        yield e


def assert_next_job_is_fresh(ex):
    reports = ex.run_many(PROBES)
    assert [r.outcomes for r in reports] == FRESH and all(r.all_trusted for r in reports)


def test_the_probes_give_a_fresh_executors_verdicts():
    with Executor(workers=1) as fresh:
        assert_next_job_is_fresh(fresh)


# ------------------------------------------------------------------ 1. a test that never answers
SPIN = ADD + "def spin():\n    while True:\n        pass\n"


@pytest.mark.parametrize("where", [0, 1, 2])
@pytest.mark.parametrize("who", ["candidate", "test"])
def test_a_test_that_loops_forever_does_not_poison_the_worker(ex1, where, who):
    tests = list(CHECKS)
    tests[where] = "spin()" if who == "candidate" else "while True:\n    pass"
    r = ex1.run(SPIN, tests, timeout_s=0.4)
    assert r.outcomes == tuple("timeout" if k == where else "passed" for k in range(3)) and r.all_trusted
    assert r.error == f"timeout after 0.40 s of CPU time [test {where}]"
    assert_next_job_is_fresh(ex1)  # (the last-test loop left the judge waiting: every later job timed out)


# ------------------------------------------------------------------ 2. the judge <-> candidate channel
CHANNEL = """import array, fcntl, os, socket, struct
FRAME = b'\\xfeCoS' + struct.pack('>I', 11) + b't3:s1:Ri3;N'   # ("R", 3, None): an answer of 3
def sockets():
    out = []
    for fd in range(127, 2, -1):  # (the test's own socket first: the command socket fills up)
        try:
            s = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        if s.family == socket.AF_UNIX:
            out.append((fd, s))
    return out
def attack():
    for fd, s in sockets():
        try:
            ATTACK
        except OSError:
            pass
def add(a, b):
    attack()
    return a - b
"""
ATTACKS = {
    "shut down": ("s.shutdown(socket.SHUT_RDWR)", ("error", "error", "error")),
    "O_NONBLOCK": ("fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)",
                   ("failed", "failed", "passed")),
    "queued answers": ("s.setblocking(False)\n            for _ in range(300):\n                s.send(FRAME)",
                       ("failed", "failed", "passed")),  # (answers without the request's id: dropped)
    "queued answers with fds": (
        "s.setblocking(False)\n            for _ in range(100):  # (100 fds in flight: under RLIMIT_NOFILE)\n"
        "                s.sendmsg([FRAME], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', [0]))])",
        ("failed", "failed", "passed")),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_channel_attacks_reach_no_later_test_or_job(ex1, attack):
    body, want = ATTACKS[attack]
    r = ex1.run(CHANNEL.replace("ATTACK", body), CHECKS)
    assert r.outcomes == want and r.all_trusted
    # the wrong program of the probes gets its own verdicts, never the queued "3"
    assert_next_job_is_fresh(ex1)


# ------------------------------------------------------------------ 3. candidate writes stay in their test
GROW = "def grow(x):\n    x.append(9)\n    return len(x)\n"


def test_candidate_writes_reach_only_what_the_test_owns(ex1):
    tests = ["assert grow(L) == 2 and L == [1, 9]",  # setup's L: written back, within this test
             "assert L == [1]",  # the next test sees setup as if fresh
             "xs = [0]\nassert grow(xs) == 2 and xs == [0, 9]",
             "import sys\nn = len(sys.path)\nassert grow(sys.path) == n + 1 and 9 not in sys.path",  # a module's: not
             "import sys\nassert 9 not in sys.path"]
    r = ex1.run(GROW, tests, setup="L = [1]")
    assert r.outcomes == ("passed",) * 5 and r.all_trusted
    assert_next_job_is_fresh(ex1)


# ------------------------------------------------------------------ 4. no forged outcome is paid
ALWAYS = ("class Always:\n    def __eq__(self, other):\n        return True\n    __ne__ = __eq__\n"
          "def deep():\n    x = 0\n    for _ in range(99):\n        x = [x]\n    return x\n"
          "def add(a, b):\n    return Always()\n")


def test_the_candidate_cannot_steer_a_test_to_a_forgeable_path(ex1):
    # its deep value cannot be sent back within the format: that is the judge's "error" now, not a
    # run inside the candidate (where Always() == 3 passed)
    r = ex1.run(ALWAYS, ["assert add(deep(), 1) == 3", "assert add(1, 2) == 3"])
    assert r.outcomes == ("error", "error") and r.all_trusted
    assert r.error == "ValueError: argument not sendable to the candidate: value nested deeper than 100 levels [test 0]"
    assert_next_job_is_fresh(ex1)


def test_an_untrusted_pass_is_paid_only_when_asked(ex1):
    tests = ["assert add(lambda: 1, 2) == 3"]  # a lambda cannot be sent: decided from the text, before it runs
    r = ex1.run(ALWAYS, tests)
    assert r.outcomes == ("error",) and r.trusted == (False,) and r.error == UNPAID + " [test 0]"
    with Executor(workers=1, untrusted="count") as counting:
        r = counting.run(ALWAYS, tests)
        assert r.outcomes == ("passed",) and r.trusted == (False,)  # the forged pass, flagged
        assert counting.describe()["untrusted"] == "count"
    assert ex1.describe()["untrusted"] == "refuse"
    assert_next_job_is_fresh(ex1)


# ------------------------------------------------------------------ 5. a process's end is not an exception
def test_system_exit_and_a_process_end_are_not_caught_by_except_exception(ex1):
    code = "import os, sys\ndef quit():\n    sys.exit(0)\ndef die():\n    os._exit(0)\n"
    tests = ["try:\n    quit()\nexcept Exception:\n    pass", "try:\n    quit()\nexcept SystemExit:\n    pass",
             "try:\n    die()\nexcept Exception:\n    pass", "try:\n    die()\nexcept BaseException:\n    pass",
             "assert 1"]
    r = ex1.run(code, tests)
    assert r.outcomes == ("error", "passed", "error", "error", "passed") and r.all_trusted
    assert r.error == "SystemExit: 0 [test 0]"
    r = ex1.run(code, tests[2:])
    assert r.error == ("CandidateEnded: the candidate's process ended during the test (exit status 0) [test 0]")
    assert_next_job_is_fresh(ex1)


# ------------------------------------------------------------------ 6. correct programs pass
CORRECT = {
    "namedtuple": ("from collections import namedtuple\nPoint = namedtuple('Point', 'x y')\n"
                   "def mid(a, b):\n    return Point((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)\n",
                   ["assert mid((0, 0), (2, 4)) == (1, 2)", "assert mid((0, 0), (2, 4)).y == 2",
                    "assert mid((0, 0), (2, 2))._asdict() == {'x': 1, 'y': 1}",
                    "assert isinstance(mid((0, 0), (0, 0)), tuple) and type(mid((0, 0), (0, 0))).__name__ == 'Point'"],
                   "", None),
    "counter and deque": ("import collections\ndef freq(s):\n    return collections.Counter(s)\n"
                          "def window(xs):\n    return collections.deque(xs, 2)\n",
                          ["assert freq('abca').most_common(1) == [('a', 2)]",
                           "assert window([1, 2, 3]) == collections.deque([2, 3])"], "import collections", None),
    "generators": ("def naturals():\n    i = 0\n    while True:\n        yield i\n        i += 1\n"
                   "def evens(n):\n    return (x for x in range(n) if x % 2 == 0)\n"
                   "def fails():\n    yield 1\n    raise ValueError('after one')\n",
                   ["g = naturals()\nassert next(g) == 0 and next(g) == 1 and next(g) == 2",
                    "import itertools\nassert list(itertools.islice(naturals(), 5)) == [0, 1, 2, 3, 4]",
                    "assert list(evens(10)) == [0, 2, 4, 6, 8] and 4 in evens(10) and sum(evens(5)) == 6",
                    "assert [x for x in evens(5)] == [0, 2, 4]",
                    "g = fails()\nassert next(g) == 1\ntry:\n    next(g)\n    assert False\n"
                    "except ValueError as e:\n    assert str(e) == 'after one'",
                    "got = []\ntry:\n    for x in fails():\n        got.append(x)\nexcept ValueError:\n"
                    "    assert got == [1]"], "", None),
    "exceptions": ("import json\nclass Bad(ValueError):\n    pass\n"
                   "def parse(s):\n    return json.loads(s)\ndef check(x):\n    if x < 0:\n        raise Bad('negative: %d' % x)\n"
                   "    return {}[x]\n",
                   ["import json\ntry:\n    parse('{')\n    assert False\nexcept json.JSONDecodeError as e:\n"
                    "    assert str(e).startswith('Expecting property name') and e.pos == 1",
                    "try:\n    check(-2)\n    assert False\nexcept ValueError as e:\n"
                    "    assert str(e) == 'negative: -2' and type(e).__name__ == 'Bad' and e.args == ('negative: -2',)",
                    "try:\n    check(3)\nexcept KeyError as e:\n    assert str(e) == '3' and e.args == (3,)"], "", None),
    "large values": ("def big():\n    return 3 ** 400000\ndef long():\n    return 'ab' * (10 << 20)\n",
                     ["assert big() % 1000 == pow(3, 400000, 1000)", "assert len(long()) == 20 << 20"], "", None),
    "builtin types as data": ("def drop(xs, kind):\n    return [x for x in xs if not isinstance(x, kind)]\n"
                              "def kind(x):\n    return type(x)\n",
                              ["assert drop((4, 5, 7.7), int) == [7.7]", "assert drop((7, 'SR'), str) == [7]",
                               "assert kind('a') == str and kind(1) is int"], "", None),  # (MBPP/533)
    "many calls": ("def inc(x):\n    return x + 1\n",
                   ["for i in range(30000):\n    assert inc(i) == i + 1"], "", None),
    "named like a builtin": ("def sum(a, b):\n    s = 0\n    for i in range(1, min(a, b) + 1):\n"
                             "        if a % i == 0 and b % i == 0:\n            s += i\n    return s\n",
                             ["assert sum(10, 15) == 6", "assert sum(100, 150) == 93", "assert sum(4, 6) == 3"],
                             "", "sum"),  # MBPP/126
}


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_programs_pass_on_the_trusted_path(ex1, name):
    code, tests, setup, entry_point = CORRECT[name]
    r = ex1.run(code, tests, setup, timeout_s=3.0, entry_point=entry_point)
    assert r.outcomes == ("passed",) * len(tests) and r.all_trusted, r.error
    assert_next_job_is_fresh(ex1)


def test_a_builtin_name_the_task_does_not_name_is_judged_inside_the_candidate_visibly(ex1):
    code, tests, _, _ = CORRECT["named like a builtin"]
    r = ex1.run(code, tests)  # no entry point: the judge's sum would be the builtin
    assert r.outcomes == ("error",) * 3 and r.trusted == (False,) * 3 and r.error == UNPAID + " [test 0]"


def test_an_answer_too_large_for_the_channel_is_an_error_that_says_so(monkeypatch):
    mine, theirs = socket.socketpair()
    monkeypatch.setattr(child, "MAX_REPLY", 100)
    for rid in (1, 2):  # (the first is the answer to a request that is no more: dropped)
        child.reply(theirs.fileno(), (rid.to_bytes(child.RID, "big"), ("C", lambda: "x" * 1000, (), {})), {},
                    child.Table())
    chan = channel.Channel()
    chan.open(mine.detach())
    chan.rid = 1
    chan.begin(0, {}, keep_handles=False)
    with pytest.raises(ValueError, match=r"^the candidate's answer is \d+ bytes, more than the channel carries"):
        chan.request(("V", "x"))
    theirs.close()
    chan.close()


# ------------------------------------------------------------------ 8. messages any writer can write
def test_a_lone_surrogate_in_a_message_reaches_the_report_escaped(ex1):
    r = ex1.run("def f():\n    raise ValueError('\\ud800 x')\n", ["f()"])
    assert r.outcomes == ("error",) and r.error == "ValueError: \\ud800 x [test 0]"
    r.error.encode("utf-8")  # (evaluate.write_rows writes it)


# ------------------------------------------------------------------ a long mixed stream
STREAM = {
    "right": Job(ADD, CHECKS),
    "wrong": Job(WRONG, CHECKS),
    "loop first": Job(SPIN, ["spin()", *CHECKS[1:]], timeout_s=0.3),
    "loop middle": Job(SPIN, [CHECKS[0], "spin()", CHECKS[2]], timeout_s=0.3),
    "loop last": Job(SPIN, [*CHECKS[:2], "spin()"], timeout_s=0.3),
    "loop in program": Job("while True:\n    pass\n" + ADD, CHECKS, timeout_s=0.3),
    "crash": Job(ADD + "import ctypes\ndef crash():\n    ctypes.string_at(0)\n", [CHECKS[0], "crash()", CHECKS[1]]),
    "memory hog": Job(ADD + "def hog():\n    return len(bytearray(3 << 30))\n", [CHECKS[0], "assert hog() > 0", CHECKS[2]]),
    "exit": Job("import os\n" + ADD.replace("return", "os._exit(0)\n    return"), CHECKS),
    "system exit": Job("import sys\ndef add(a, b):\n    sys.exit(1)\n", ["try:\n    add(1, 2)\nexcept Exception:\n    pass",
                                                                       "assert 1"]),
    "setup state": Job(GROW, ["assert grow(L) == 2", "assert L == [1]"], setup="L = [1]"),
    **{f"channel: {k}": Job(CHANNEL.replace("ATTACK", body), CHECKS) for k, (body, _) in ATTACKS.items()},
}


def test_a_long_mixed_stream_gets_a_fresh_executors_verdicts_per_job():
    fresh = {}
    for name, job in STREAM.items():
        with Executor(workers=1) as one:
            r = one.run_many([job])[0]
        fresh[name] = (r.outcomes, r.error, r.trusted)
    names = [name for name in STREAM for _ in range(6)]  # 90 jobs
    random.Random(25).shuffle(names)
    with Executor(workers=2) as ex2:
        reports = ex2.run_many([STREAM[n] for n in names])
        reports += ex2.run_many([STREAM[n] for n in names[:20]])  # (a second batch on the same workers)
    got = [(n, (r.outcomes, r.error, r.trusted)) for n, r in zip(names + names[:20], reports)]
    assert [(n, v) for n, v in got if v != fresh[n]] == []
    assert fresh["loop last"][0] == ("passed", "passed", "timeout") and fresh["right"][0] == ("passed",) * 3


def test_fd_reader_gives_each_frame_its_descriptors():
    a, b = socket.socketpair()
    r, w = os.pipe()
    frames.send_with_fds(a, frames.pack(b"one"), [r])
    frames.send_with_fds(a, frames.pack(b"two" * 30000), [])
    frames.send_with_fds(a, frames.pack(b"three"), [w, r])
    reader = frames.FdReader(b)
    got = []
    assert reader.next() == b"one" and len(got := got + reader.take_fds(1)) == 1
    assert reader.next() == b"two" * 30000 and reader.take_fds(0) == []
    assert reader.next() == b"three" and len(got := got + reader.take_fds(2)) == 3
    os.write(got[1], b"x")
    assert os.read(got[0], 1) == b"x"  # (they are the pipe's ends)
    a.close()
    assert reader.next() is None
    for fd in got + [r, w]:
        os.close(fd)
    b.close()
