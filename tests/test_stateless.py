"""sandbox/stateless.py: which programs may serve all their tests from one process, and the verdicts that gives.

A program is "stateless" when no call into it can leave state a later call would see; then C serves the judge's
calls for its trusted tests itself instead of forking T_i per test. The classification must refuse every way a
call can carry state, and the verdicts of a stateless program must be those of a fork per test.
"""
import pytest

from cocos_lib.executor import Executor, Job
from cocos_lib.executor.sandbox.stateless import stateless
from cocos_lib.tasks import load_humaneval, load_mbpp

PURE = {
    "plain function": "def add(a, b):\n    return a + b\n",
    "docstring, typing, nested def, lambda, comprehension": (
        '"""doc"""\nfrom typing import List\n\ndef f(xs: List[int]) -> List[int]:\n'
        '    def sq(v):\n        return v * v\n    key = lambda v: -v\n'
        '    return sorted([sq(x) for x in xs if x], key=key)\n'),
    "listed modules, at the top and inside": (
        "import math\nfrom collections import Counter\nimport itertools as it\n"
        "def f(xs):\n    import heapq\n    h = list(xs)\n    heapq.heapify(h)\n"
        "    return math.gcd(*h) + sum(Counter(xs).values()) + len(list(it.permutations(h[:3])))\n"),
    "local containers mutated": (
        "def f(n):\n    seen, out = set(), {}\n    for i in range(n):\n        out[i] = i\n        seen.add(i)\n"
        "        del out[i]\n    out[0] = len(seen)\n    return out\n"),
    "immutable module constants, generator": (
        "LIMIT = 10\nPAIR = (1, -2.5, 'a')\ndef g(n):\n    for i in range(min(n, LIMIT)):\n        yield i + PAIR[0]\n"),
    "HumanEval-style setup (unread mutable METADATA, import random, assert True)": (
        "METADATA = {'author': 'jt', 'dataset': 'test'}\nimport random\nrng = random.Random(42)\n"
        "assert True, 'debug'\ndef f(x):\n    return x * 2\n"),
    "module-level asserts and a main guard (runs once, or never, in every mode)": (
        "def f(x):\n    return x + 1\nassert f(1) == 2\nR = f(2)\nif __name__ == '__main__':\n"
        "    import threading\n    print(f(3))\n"),
    "a module-level result no function reads": "def g():\n    return []\nX = g()\ndef f():\n    return 1\n",
}

STATEFUL = {
    "mutable default": "def f(x, acc=[]):\n    acc.append(x)\n    return len(acc)\n",
    "global statement": "N = 0\ndef f():\n    global N\n    N += 1\n    return N\n",
    "nonlocal": "def f():\n    c = 0\n    def g():\n        nonlocal c\n        c += 1\n    g()\n    return c\n",
    "module-level list read in a function": "SEEN = []\ndef f(x):\n    SEEN.append(x)\n    return len(SEEN)\n",
    "module-level dict aliased": "D = {}\ndef f(x):\n    d = D\n    d[x] = 1\n    return len(d)\n",
    "function attribute": "def f():\n    f.calls = getattr(f, 'calls', 0) + 1\n    return f.calls\n",
    "dunder dict": "def f():\n    d = f.__dict__\n    d['n'] = d.get('n', 0) + 1\n    return d['n']\n",
    "dunder in a string": "import operator\ndef f():\n    return operator.attrgetter('__dict__')(f)\n",
    "getattr/setattr": "def f(o):\n    setattr(o, 'x', 1)\n    return o\n",
    "globals()": "def f():\n    globals()['n'] = 1\n    return 1\n",
    "vars()": "def f():\n    return vars()\n",
    "class": "class C:\n    n = 0\ndef f():\n    C.n += 1\n    return C.n\n",
    "decorator (lru_cache)": "import functools\n@functools.lru_cache(None)\ndef f(n):\n    return n\n",
    "lru_cache called": "import functools\ndef g(n):\n    return n\ndef f(n):\n    return functools.lru_cache(None)(g)(n)\n",
    "update_wrapper": "import functools\ndef g():\n    return 1\ndef f(h):\n    functools.update_wrapper(g, h)\n    return 1\n",
    "module aliased to a local": "import functools\ndef f():\n    m = functools\n    return m.update_wrapper\n",
    "outer import used in an inner function": (
        "def f():\n    import functools as ft\n    def g():\n        return ft.update_wrapper\n    return g()\n"),
    "random": "import random\ndef f():\n    return random.random()\n",
    "sys": "import sys\ndef f():\n    sys.setrecursionlimit(10**6)\n    return 1\n",
    "os": "import os\ndef f():\n    os.environ['X'] = '1'\n    return 1\n",
    "module-level thread": "import threading\ndef f():\n    return 1\n",
    "module-level hook call": "import sys\nsys.setprofile(None)\ndef f():\n    return 1\n",
    "star import": "from math import *\ndef f():\n    return pi\n",
    "open": "def f():\n    open('/tmp/x', 'w').write('1')\n    return 1\n",
    "exec": "def f():\n    exec('x = 1')\n    return 1\n",
    "with": "def f():\n    with open('x') as fh:\n        return fh.read()\n",
    "attribute deletion": "import math\ndef f():\n    del math.pi\n",
    "unknown name": "def f():\n    return undefined_thing(1)\n",
    "mutable default of a nested function": "def f():\n    def g(x, acc=[]):\n        return acc\n    return g(1)\n",
    "typing.no_type_check": "import typing\ndef g():\n    return 1\ndef f():\n    typing.no_type_check(g)\n    return 1\n",
    "frames through a generator": (
        "LIMIT = 3\ndef gen():\n    yield 1\ndef f():\n    d = gen().gi_frame.f_globals\n    d['LIMIT'] = []\n"
        "    return LIMIT\n"),
    "a dunder name built at run time (attrgetter)": (
        "import operator\ndef f():\n    d = operator.attrgetter('_' + '_dict' + '_' + '_')(f)\n    d['n'] = 1\n    return 1\n"),
    "a dunder name built at run time (Formatter)": (
        "import string\ndef f():\n    d = string.Formatter().get_field('0._' + '_dict' + '_' + '_', (f,), {})[0]\n"
        "    d['n'] = 1\n    return 1\n"),
    "globals handed to a function at module level": (
        "LIMIT = 3\ndef h(g):\n    d = g()\n    d['LIMIT'] = []\n    return 1\nh(globals)\n"
        "def f():\n    return LIMIT\n"),
    "a module another listed module imported": "import statistics\ndef f():\n    statistics.sys.setrecursionlimit(50)\n    return 1\n",
    "decimal context": "import decimal\ndef f():\n    decimal.getcontext().prec = 3\n    return 1\n",
    "syntax error": "def f(:\n    return 1\n",
    "a defined name rebound, then called at module level": (
        "import math\ndef f():\n    return 1\nf = setattr\nf(math, 'cache', [])\ndef g(x):\n"
        "    math.cache.append(x)\n    return len(math.cache)\n"),
    "module attribute set at module level": "import math\nmath.cache = []\ndef f():\n    return math.cache\n",
    "module-level loop": "def f():\n    return 1\nfor i in range(3):\n    f()\n",
    "module-level call outside the lists": "import random\nrandom.seed(1)\ndef f():\n    return 1\n",
}


@pytest.mark.parametrize("name", sorted(PURE))
def test_pure_programs_are_stateless(name):
    assert stateless(PURE[name]) is True


@pytest.mark.parametrize("name", sorted(STATEFUL))
def test_every_state_channel_is_refused(name):
    assert stateless(STATEFUL[name]) is False


def test_listed_modules_expose_no_module_or_container():
    """A module listed with any public name (None) has no public attribute that is a module (statistics.sys)
    or a mutable container a call could change."""
    import importlib
    import types

    from cocos_lib.executor.sandbox.stateless import MODULES
    for name, allowed in MODULES.items():
        if allowed is None:
            mod = importlib.import_module(name)
            public = [getattr(mod, a) for a in dir(mod) if not a.startswith("_")]
            assert not [v for v in public if isinstance(v, (types.ModuleType, list, dict, set, bytearray))], name


def test_most_reference_solutions_are_stateless():
    """The fast path covers the benchmarks' ordinary programs and a real model's answers (README §4's counts):
    HumanEval's canonical solutions, MBPP's test references, the toy references, and the committed turn-1 answers
    of Qwen2.5-Coder-0.5B-Instruct on HumanEval (data/results/real/study_cocos.jsonl)."""
    import json
    from pathlib import Path

    from cocos_lib.task_sets import load_tasks
    humaneval = {t.task_id: t for t in load_humaneval()}
    he = [t for t in humaneval.values() if stateless(t.setup + "\n" + t.reference)]
    mbpp = [t for t in load_mbpp("test") if stateless(t.setup + "\n" + t.reference)]
    toy = [t for t in load_tasks("toy-test")[:200] if stateless(t.setup + "\n" + t.reference)]
    rows = [json.loads(line) for line in (Path(__file__).resolve().parents[1] / "data/results/real/study_cocos.jsonl")
            .read_text().splitlines()]
    real = [r for r in rows if r["turn"] == 1]
    cleared = [r for r in real if stateless(humaneval[r["task_id"]].setup + "\n" + (r["code"] or ""))]
    assert (len(he), len(mbpp), len(toy), len(cleared), len(real)) == (159, 491, 200, 156, 164)


FORK = "\n\nclass _ForkEveryTest:\n    pass\n"  # a class makes any program stateful: a fork per test


def _wrong(reference):
    return reference.replace("return ", "return not ", 1)


def test_stateless_verdicts_equal_a_fork_per_test():
    """HumanEval's stateless canonical solutions, right and made wrong: every outcome and message of the shared
    path equals the fork-per-test path's (the same program with a class appended), and a state-carrying
    program still gets a fresh process per test."""
    tasks = [t for t in load_humaneval() if stateless(t.setup + "\n" + t.reference)][::3]
    codes = [t.reference for t in tasks] + [_wrong(t.reference) for t in tasks]
    assert all(stateless(t.setup + "\n" + c) for t, c in zip(tasks + tasks, codes))
    shared = [Job(c, t.tests, t.setup, 3.0) for t, c in zip(tasks + tasks, codes)]
    forked = [Job(c + FORK, t.tests, t.setup, 3.0) for t, c in zip(tasks + tasks, codes)]
    counter = Job(STATEFUL["mutable default"], ["assert f(0) == 1"] * 3)
    with Executor(workers=2) as ex:
        a, b, c = ex.run_many(shared), ex.run_many(forked), ex.run_many([counter])[0]
    assert [(r.outcomes, r.error, r.trusted) for r in a] == [(r.outcomes, r.error, r.trusted) for r in b]
    assert sum(r.all_passed for r in a[:len(tasks)]) == len(tasks)
    assert sum(not r.all_passed for r in a[len(tasks):]) > len(tasks) // 2
    assert c.outcomes == ("passed",) * 3


def test_memory_a_shared_test_kept_is_not_the_next_tests():
    """A returned iterator stays referenced in C (a handle) with the list behind it; when C's resident memory
    has grown past MEMORY_GROWTH_MB the next test gets a fresh C, so its headroom is a fresh fork's: both
    tests pass, as with a fork per test (where test 1 would otherwise hit the 512 MiB cap)."""
    code = "def f(n):\n    return iter([0] * n)\n"
    assert stateless(code)
    tests = ["assert next(f(40_000_000)) == 0", "assert next(f(40_000_000)) == 0", "assert next(f(1)) == 0"]
    with Executor(workers=1, memory_mb=512) as ex:
        shared, forked = ex.run_many([Job(code, tests), Job(code + FORK, tests)])
    assert shared.outcomes == forked.outcomes == ("passed",) * 3


def test_timeouts_exits_recursion_and_memory_errors_match_a_fork_per_test():
    """What ends or fails a shared test (a loop that times out and replaces C, SystemExit from the call, a
    RecursionError, a MemoryError) gives the later tests the verdicts a fork per test gives."""
    programs = {
        "def f(x):\n    while x == 0:\n        pass\n    return x + 1\n":
            ["assert f(0) == 1", "assert f(1) == 2", "assert f(2) == 3"],
        "def f(x):\n    if x == 0:\n        raise SystemExit(3)\n    return x + 1\n":
            ["assert f(0) == 1", "assert f(1) == 2", "try:\n    f(0)\nexcept Exception:\n    pass\nassert f(2) == 3"],
        "def f(x):\n    return f(x + 1) if x < 10**6 else x\n": ["assert f(0) == 1", "assert f(10**6) == 10**6"],
        "def f(n):\n    return len([0] * n)\n": ["assert f(10**10) == 1", "assert f(3) == 3"],
    }
    assert all(stateless(code) for code in programs)
    jobs = [Job(code + fork, tests, timeout_s=1.0) for code, tests in programs.items() for fork in ("", FORK)]
    with Executor(workers=2) as ex:
        reports = ex.run_many(jobs)
    pairs = list(zip(reports[::2], reports[1::2]))
    assert [(a.outcomes, a.error) for a, _ in pairs] == [(b.outcomes, b.error) for _, b in pairs]
    assert [a.outcomes for a, _ in pairs] == [("timeout", "passed", "passed"), ("error", "passed", "error"),
                                               ("error", "passed"), ("error", "passed")]
