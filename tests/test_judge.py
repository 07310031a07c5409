"""The trusted verdict: which tests the judge runs itself, and what they see of the candidate."""
import pytest

from cocos_lib.toy import warmstart as toy
from cocos_lib.executor import Job

# MBPP-style tasks written for this repo (reference code, asserts in MBPP's habits): float
# compares, set(...) == set(...), sorted, tuples, strings, bools, `is None`, `not f(x)`, dicts,
# nested lists, classes, generators, exceptions, in-place mutation, a function as an argument.
MBPP_STYLE = [
    ("def area(r):\n    return 3.141592653589793 * r * r",
     ["assert abs(area(2) - 12.566370614359172) < 1e-9", "assert math.isclose(area(1), math.pi)",
      "assert round(area(3), 2) == 28.27"], "import math"),
    ("def common(a, b):\n    return list(set(a) & set(b))",
     ["assert set(common([1, 2, 3], [2, 3, 4])) == set([2, 3])", "assert sorted(common('abc', 'bcd')) == ['b', 'c']",
      "assert common([], [1]) == []"], ""),
    ("def min_max(xs):\n    return (min(xs), max(xs))",
     ["assert min_max([3, 1, 2]) == (1, 3)", "assert min_max((5,)) == (5, 5)"], ""),
    ("def rev(s):\n    return s[::-1]",
     ["assert rev('python') == 'nohtyp'", "assert rev('') == ''", "assert rev('a\\u00e9') == '\\u00e9a'"], ""),
    ("def is_even(n):\n    return n % 2 == 0",
     ["assert is_even(4) == True", "assert is_even(3) is False", "assert not is_even(7)", "assert is_even(0)"], ""),
    ("def nothing(x):\n    x.sort()",
     ["assert nothing([2, 1]) is None", "xs = [3, 1, 2]\nnothing(xs)\nassert xs == [1, 2, 3]"], ""),
    ("def freq(s):\n    from collections import Counter\n    return Counter(s)",
     ["assert freq('aab') == {'a': 2, 'b': 1}", "assert freq('') == {}"], ""),
    ("def nest(n):\n    return [[i] * i for i in range(n)]",
     ["assert nest(3) == [[], [1], [2, 2]]", "assert len(nest(10)) == 10"], ""),
    ("def pairs(n):\n    return {i: i * i for i in range(n)}",
     ["assert pairs(3) == {0: 0, 1: 1, 2: 4}", "assert sum(pairs(4).values()) == 14"], ""),
    ("class Pair(object):\n    def __init__(self, a, b):\n        self.a = a\n        self.b = b\n"
     "def max_chain_length(arr, n):\n    return max(p.b - p.a for p in arr[:n])",
     ["assert max_chain_length([Pair(5, 24), Pair(15, 25), Pair(27, 40)], 3) == 19",
      "assert Pair(1, 2).b == 2"], ""),
    ("def squares(n):\n    for i in range(n):\n        yield i * i",
     ["assert list(squares(4)) == [0, 1, 4, 9]", "assert 9 in squares(5)"], ""),
    ("def parse(s):\n    if not s.isdigit():\n        raise ValueError('not a number: ' + s)\n    return int(s)",
     ["assert parse('12') == 12", "try:\n    parse('x')\n    assert False\nexcept ValueError as e:\n    assert 'x' in str(e)"], ""),
    ("def apply(f, xs):\n    return [f(x) for x in xs]\ndef double(x):\n    return 2 * x",
     ["assert apply(double, [1, 2]) == [2, 4]", "assert sorted([3, 1, 2], key=double) == [1, 2, 3]"], ""),
    ("def big(n):\n    return 7 ** n",
     ["assert big(300) % 1000 == pow(7, 300, 1000)", "assert str(big(3)) == '343'"], ""),
    ("def to_bytes(s):\n    return s.encode('utf-8')",
     ["assert to_bytes('\\u00e9') == b'\\xc3\\xa9'", "assert isinstance(to_bytes('a'), bytes)"], ""),
    ("LIMIT = 10\ndef clip(x):\n    return min(x, LIMIT)",
     ["assert clip(12) == LIMIT", "assert clip(3) == 3"], ""),
    ("def cplx(a, b):\n    return complex(a, b)",
     ["assert cplx(1, 2) == 1 + 2j", "assert abs(cplx(3, 4)) == 5.0"], ""),
    ("def nan():\n    return float('nan')",
     ["assert nan() != nan()", "import math\nassert math.isnan(nan())"], ""),
]


def test_mbpp_style_sample_is_judged_outside_the_candidate_and_passes(executor):
    reports = executor.run_many([Job(code, tests, setup) for code, tests, setup in MBPP_STYLE])
    assert [r.outcomes for r in reports] == [("passed",) * len(t) for _, t, _ in MBPP_STYLE]
    n = sum(len(t) for _, t, _ in MBPP_STYLE)
    assert n == 41 and sum(sum(r.trusted) for r in reports) == n  # every one on the trusted path


def test_wrong_answers_fail_on_the_trusted_path(executor):
    wrong = [("def area(r):\n    return 3.14 * r * r", MBPP_STYLE[0][1], "import math",
              ("failed", "failed", "failed")),
             ("def rev(s):\n    return s", MBPP_STYLE[3][1], "", ("failed", "passed", "failed")),
             ("def is_even(n):\n    return 1 - n % 2", MBPP_STYLE[4][1], "", ("passed", "failed", "passed", "passed")),
             ("def nothing(x):\n    return sorted(x)", MBPP_STYLE[5][1], "", ("failed", "failed")),
             ("def parse(s):\n    return int(s) if s.isdigit() else -1", MBPP_STYLE[11][1], "", ("passed", "failed")),
             ("def parse(s):\n    return int(s)", ["assert parse('x') == 0"], "", ("error",))]
    reports = executor.run_many([Job(code, tests, setup) for code, tests, setup, _ in wrong])
    assert [r.outcomes for r in reports] == [want for *_, want in wrong]
    assert all(r.all_trusted for r in reports)
    assert reports[5].error == "ValueError: invalid literal for int() with base 10: 'x' [test 0]"


def test_toy_tasks_take_the_trusted_path(executor):
    tasks = toy.toy_tasks("test", n=40) + toy.toy_tasks("train", n=40, difficulty=2)
    reports = executor.run_many([Job(t.reference, t.tests, t.setup) for t in tasks])
    assert all(r.all_passed and r.all_trusted for r in reports)
    assert sum(len(r.outcomes) for r in reports) == 4 * len(tasks)  # K = 4 tests per toy task


@pytest.mark.slow
def test_every_humaneval_assert_takes_the_trusted_path(executor):
    from cocos_lib.tasks import load_humaneval

    reports = executor.run_many([Job(t.reference, t.tests, t.setup) for t in load_humaneval()])
    assert sum(len(r.outcomes) for r in reports) == 1133
    assert sum(sum(r.trusted) for r in reports) == 1133 and all(r.all_passed for r in reports)


def test_the_candidate_cannot_decide_a_comparison(executor):
    cheat = ("class Always:\n    def __eq__(self, other):\n        return True\n    __ne__ = __lt__ = __gt__ = __eq__\n"
             "    def __bool__(self):\n        return True\n    def __hash__(self):\n        return 0\n"
             "def add(a, b):\n    return Always()\n")
    r = executor.run(cheat, ["assert add(1, 2) == 3", "assert add(1, 2) != 4", "assert add(1, 2) in {3}", "assert add(1, 2)"])
    assert r.outcomes == ("error", "error", "error", "passed") and r.all_trusted  # bool() is the candidate's own answer
    assert r.error == "TypeError: the judge does not compare candidate objects (a Always) [test 0]"


def test_candidate_exceptions_reach_the_test_as_builtin_classes(executor):
    code = ("class Odd(KeyError):\n    pass\ndef f(x):\n    if x == 1:\n        raise Odd('one')\n"
            "    if x == 2:\n        assert False, 'inner'\n    if x == 3:\n        raise SystemExit(3)\n    return x\n")
    tests = ["try:\n    f(1)\nexcept KeyError:\n    pass", "f(1)", "f(2)", "f(3)", "assert f(4) == 4"]
    r = executor.run(code, tests)
    assert r.outcomes == ("passed", "error", "failed", "error", "passed") and r.all_trusted
    assert r.error == "Odd: 'one' [test 1]"


UNPAID = "untrusted pass not counted: the test ran inside the candidate, which could have forged it " \
         "(Executor(untrusted='count') counts it)"


@pytest.fixture(scope="module")
def ex_count():
    from cocos_lib.executor import Executor

    with Executor(workers=2, untrusted="count") as e:
        yield e


def test_tests_that_reach_into_candidate_objects_run_in_the_candidate_untrusted(executor, ex_count):
    code = "import math\nL = []\ndef push(x):\n    L.append(x)\n    return len(L)\n"
    tests = ["assert push(1) == 1", "L.append(5); assert push(1) == 2", "assert math.pi > 3", "assert 'push' in globals()",
             "assert L == []"]
    r = ex_count.run(code, tests)
    assert r.outcomes == ("passed",) * 5
    # the program's `import math` is a stdlib module: the judge imports its own (the same module
    # a fresh interpreter gives), so `math.pi` is judged; `L.append`, `globals()` are not
    assert r.trusted == (True, False, True, False, True)
    r = executor.run(code, tests)  # the default: an untrusted pass is not paid
    assert r.outcomes == ("passed", "error", "passed", "error", "passed") and r.error == UNPAID + " [test 1]"


def test_a_test_passing_something_not_plain_falls_back(executor, ex_count):
    code = "def apply(f, x):\n    return f(x)\n"
    tests = ["assert apply(lambda v: v + 1, 1) == 2", "assert apply(abs, -3) == 3", "assert apply(str, 5) == '5'"]
    r = ex_count.run(code, tests)  # (a builtin type is data: `str` travels by name)
    assert r.outcomes == ("passed", "passed", "passed") and r.trusted == (False, False, True)
    r = executor.run(code, tests)
    assert r.outcomes == ("error", "error", "passed") and r.trusted == (False, False, True)


def test_program_isolation_judges_too(executor):
    from cocos_lib.executor import Executor

    with Executor(workers=1, isolation="program") as ex1:
        reports = ex1.run_many([Job(code, tests, setup) for code, tests, setup in MBPP_STYLE])
    assert [r.outcomes for r in reports] == [("passed",) * len(t) for _, t, _ in MBPP_STYLE]
    assert all(r.all_trusted for r in reports)
