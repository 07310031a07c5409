"""The toy world's tasks: generated MBPP-style problems with K = 4 unit tests each, built so that
a wrong program usually passes *some* of its tests (the setting where the progressive reward
r_t = (1/K) sum_k 1{u_k passes} tells more than the binary one).

An operation `op` with a constant n is one solution, e.g. `tail` with n = 3:
    Write a function to get the last 3 characters of a string.
    assert tail_3('abcdef') == 'def'     <- the misconception s[3:] agrees here (len(s) == 2n)
    assert tail_3('') == ''              <- and here (an edge case)
    assert tail_3('qwertyu') == 'rtyu'   <- but not here
Test inputs mix edge cases (0, x = n, multiples of n and their neighbours, x < n, '', short
strings, strings of length 2n, empty lists, lists with or without n, n - 1, n + 1) with random
ones, so that both the warm-start's systematic misconceptions (`bug`) and typical sampling
slips (an off-by-one constant, a wrong comparison) agree with the reference on some tests and
not on others.
Guarantees, per task: the K inputs are distinct (so are the tests), and every program of
`wrong_bodies` (the misconception, the constants n - 1 and n + 1) fails at least one of them;
how many it passes is left to the draw (tests/test_toy.py states the shares).

Disjoint splits by construction: (op, n) is a test pair iff (index(op) + n) % 4 == 0; train
tasks never share a solution with test tasks. Deterministic in (split, n, seed, difficulty).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from cocos_lib.tasks import Task

SPLITS = ("train", "test")
DEFAULT_N = {"train": 2000, "test": 200}
K_TESTS = 4  # unit tests per task
LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class Op:
    """One function family member: text and code templates in the constant {n}; `bug` is the
    turn-1 misconception (None: the warm-start gets it right); `fn(x, n)` the true semantics."""
    name: str
    family: str  # "arith" (arg x: int), "string" (arg s: str), "list" (arg a: list[int])
    text: str
    body: str
    bug: str | None
    fn: Callable


def _maxor(a: list, n: int) -> int:
    return max(a, default=n)


OPS = (
    Op("add", "arith", "Write a function to add {n} to a number.", "x+{n}", None, lambda x, n: x + n),
    Op("sub", "arith", "Write a function to subtract {n} from a number.", "x-{n}", "{n}-x", lambda x, n: x - n),
    Op("mul", "arith", "Write a function to multiply a number by {n}.", "x*{n}", None, lambda x, n: x * n),
    Op("div", "arith", "Write a function to divide a number by {n}, rounding down.", "x//{n}", "x/{n}",
       lambda x, n: x // n),
    Op("mod", "arith", "Write a function to get the remainder of a number divided by {n}.", "x%{n}", None,
       lambda x, n: x % n),
    Op("head", "string", "Write a function to get the first {n} characters of a string.", "s[:{n}]", None,
       lambda s, n: s[:n]),
    Op("tail", "string", "Write a function to get the last {n} characters of a string.", "s[-{n}:]", "s[{n}:]",
       lambda s, n: s[-n:]),
    Op("drop", "string", "Write a function to remove the first {n} characters of a string.", "s[{n}:]", None,
       lambda s, n: s[n:]),
    Op("rep", "string", "Write a function to repeat a string {n} times.", "s*{n}", None, lambda s, n: s * n),
    Op("gt", "list", "Write a function to keep the numbers of a list greater than {n}.",
       "[v for v in a if v>{n}]", "[v for v in a if v>={n}]", lambda a, n: [v for v in a if v > n]),
    Op("lt", "list", "Write a function to keep the numbers of a list less than {n}.",
       "[v for v in a if v<{n}]", "[v for v in a if v<={n}]", lambda a, n: [v for v in a if v < n]),
    Op("addeach", "list", "Write a function to add {n} to each number of a list.", "[v+{n} for v in a]", None,
       lambda a, n: [v + n for v in a]),
    Op("muleach", "list", "Write a function to multiply each number of a list by {n}.", "[v*{n} for v in a]",
       None, lambda a, n: [v * n for v in a]),
    Op("count", "list", "Write a function to count how often {n} occurs in a list.", "a.count({n})", None,
       lambda a, n: a.count(n)),
    # a second branch: the misconception forgets the case x < n
    Op("dist", "arith", "Write a function to get the distance between a number and {n}.", "abs(x-{n})", "x-{n}",
       lambda x, n: abs(x - n)),
    # an edge case: the misconception forgets the empty list (max([]) raises)
    Op("maxor", "list", "Write a function to get the largest number of a list, or {n} if it is empty.",
       "max(a,default={n})", "max(a)", _maxor),
)
OP_BY_NAME = {op.name: op for op in OPS}
ARG = {"arith": "x", "string": "s", "list": "a"}


def constants(op: Op, difficulty: int) -> range:
    """The constants n of an operation; the difficulty knob widens them (longer numbers, longer
    inputs: more characters to get right). Strings keep n small so prompts stay short."""
    if difficulty not in (1, 2, 3):
        raise ValueError(f"toy_tasks: difficulty={difficulty}: expected 1, 2 or 3")
    if op.family == "string":
        return range(1, 4 + 4 * difficulty)
    return range(2, (20, 100, 1000)[difficulty - 1])


def is_test_pair(op: Op, n: int) -> bool:
    """The split rule: (op, n) is held out iff (index(op) + n) % 4 == 0."""
    return (OPS.index(op) + n) % 4 == 0


# ------------------------------------------------------------------------------ test inputs

def _word(size: int, rng: random.Random) -> str:
    return "".join(rng.choice(LETTERS) for _ in range(size))


def _draw_int(n: int, hi: int, rng: random.Random) -> int:
    """x = n (15%), a multiple of n (15%), one below a multiple (10%), x < n (10%), else uniform
    in [0, hi). Multiples and their neighbours tell x//n from x/n and from x//(n +- 1)."""
    u = rng.random()
    if u < 0.15:
        return n
    if u < 0.30:
        return n * rng.randrange(0, max(2, hi // n))
    if u < 0.40:
        return n * rng.randrange(1, max(2, hi // n)) - 1
    if u < 0.50:
        return rng.randrange(0, n)
    return rng.randrange(0, hi)


def _draw_str(op: Op, n: int, rng: random.Random) -> str:
    """'' (10%), 1..n letters (15%), exactly 2n (20%), else n+1..n+5; `rep`: 0..4 letters."""
    u = rng.random()
    if op.name == "rep":
        return "" if u < 0.15 else _word(rng.randint(1, 4), rng)
    if u < 0.10:
        return ""
    if u < 0.25:
        return _word(rng.randint(1, n), rng)
    if u < 0.45:
        return _word(2 * n, rng)
    return _word(rng.randint(n + 1, n + 5), rng)


def _draw_list(n: int, hi: int, rng: random.Random) -> list:
    """[] (10%), else 3..5 numbers from [0, min(hi, 2n+10)); n put in (50%), a neighbour
    n - 1 or n + 1 put in (30%), else left to chance."""
    if rng.random() < 0.10:
        return []
    vals = range(0, min(hi, 2 * n + 10))
    a = [rng.choice(vals) for _ in range(rng.randint(3, 5))]
    if rng.random() < 0.5:
        a[rng.randrange(len(a))] = n
    if rng.random() < 0.3:
        a[rng.randrange(len(a))] = n + rng.choice((-1, 1))
    return a


def draw_input(op: Op, n: int, difficulty: int, rng: random.Random):
    """One test input of op's family, edge cases included (see the module docstring)."""
    hi = (50, 500, 5000)[difficulty - 1]
    if op.family == "arith":
        return _draw_int(n, hi, rng)
    if op.family == "string":
        return _draw_str(op, n, rng)
    return _draw_list(n, hi, rng)


def agrees(op: Op, n: int, body: str, x) -> bool:
    """Does the program `return {body}` give op's true answer on input x? (An exception: no.)"""
    fn = eval(f"lambda {ARG[op.family]}: {body.format(n=n)}")  # our own templates, never model output
    try:
        return fn(x) == op.fn(x, n)
    except Exception:
        return False


def wrong_bodies(op: Op, n: int) -> list[str]:
    """The wrong programs every task's tests must reject: the misconception (if any) and the
    off-by-one constants n - 1, n + 1 (the commonest sampling slips)."""
    slips = [op.body.replace("{n}", str(c)) for c in (n - 1, n + 1)]
    return ([op.bug] if op.bug else []) + slips


def _inputs(op: Op, n: int, difficulty: int, rng: random.Random) -> list:
    """K_TESTS distinct inputs that together reject every one of wrong_bodies(op, n); each
    wrong program may still agree with the reference on some of them (a partial pass)."""
    wrong = wrong_bodies(op, n)
    while True:
        out: list = []
        while len(out) < K_TESTS:
            x = draw_input(op, n, difficulty, rng)
            if x not in out:
                out.append(x)
        if all(not all(agrees(op, n, body, x) for x in out) for body in wrong):
            return out


# ------------------------------------------------------------------------------ tasks

def code_for(op: Op, n: int, body: str | None = None) -> str:
    """`def {op}_{n}({arg}):\\n    return {body}` (the reference when body is None)."""
    return f"def {op.name}_{n}({ARG[op.family]}):\n    return {(body or op.body).format(n=n)}"


def make_task(op: Op, n: int, inputs: list, task_id: str) -> Task:
    name = f"{op.name}_{n}"
    tests = tuple(f"assert {name}({x!r}) == {op.fn(x, n)!r}" for x in inputs)
    return Task(task_id=task_id, text=op.text.format(n=n), tests=tests, entry_point=name,
                reference=code_for(op, n), source="toy")


def toy_tasks(split: str, n: int | None = None, seed: int = 0, difficulty: int = 1) -> list[Task]:
    """n MBPP-format toy Tasks of `split` ("train" | "test"), deterministic in (split, n, seed,
    difficulty). The (op, n) pairs of the split are visited in shuffled rounds, so every
    solution of the split appears about equally often; the test inputs vary per task."""
    if split not in SPLITS:
        raise ValueError(f"toy_tasks: split '{split}': expected one of {list(SPLITS)}")
    count = DEFAULT_N[split] if n is None else n
    if count < 0:
        raise ValueError(f"toy_tasks: n={count}: must be >= 0")
    pairs = [(op, c) for op in OPS for c in constants(op, difficulty) if is_test_pair(op, c) == (split == "test")]
    rng = random.Random(1_000_003 * seed + 10 * SPLITS.index(split) + difficulty)
    tasks, order = [], []
    for i in range(count):
        if not order:
            order = rng.sample(pairs, len(pairs))
        op, c = order.pop()
        tasks.append(make_task(op, c, _inputs(op, c, difficulty, rng), f"toy-{split}/{i}"))
    return tasks


def parse_task(task: Task) -> tuple[Op, int]:
    """(op, n) of a toy task, from its entry point `{op}_{n}`."""
    name, _, c = (task.entry_point or "").rpartition("_")
    if name not in OP_BY_NAME or not c.isdigit():
        raise ValueError(f"task '{task.task_id}': entry_point '{task.entry_point}' is not a toy task name")
    return OP_BY_NAME[name], int(c)


def misconception(task: Task) -> str | None:
    """The warm-start's systematic turn-1 answer when it differs from the reference, else None."""
    op, c = parse_task(task)
    return code_for(op, c, op.bug) if op.bug else None
