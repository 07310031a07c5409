"""Checkers for notebooks/exercises: each compares the student's answer with cases computed by hand.

One checker per exercise (numbered as in notebooks/exercises/exercises.ipynb). No checker calls the
library function its exercise is about: every expected value below is written out, with the
arithmetic in a comment, so an answer that calls the library is checked against the formula and not
against itself (tests/test_exercises.py checks that the library agrees with these cases).

A checker prints "✓ exercise N: ..." for a right answer and raises AssertionError in one line naming
the input, the expected value and the value it got for a wrong one. An unfinished answer, a body that
is still `...`, `pass` or `raise NotImplementedError`, or one that returns None, raises Unfinished;
`self_check(n, fn)`, what the notebook cells call, prints "· exercise N: not finished yet (...)" for it.

    notebook 01   1  Δi→c, Δc→i from two lists of booleans           (metrics.transition_metrics)
                  2  the no-edit rate with a threshold                (metrics.no_edit_rate)
    notebook 02   3  the progressive reward from test outcomes        (rewards.progressive_reward)
                  4  predict the sandbox's verdicts on seven programs (executor.Executor)
                  5  γ cancels from RLOO with a shared turn 1         (rl.rloo_advantages)
    notebook 03   6  R for T = 2 from r_1, r_2, γ                     (rewards.accumulated_reward)
                  7  leave-one-out advantages of one group            (rl.rloo_advantages)
                  8  RLOO against GRPO's (s - mean) / std             (rl.grpo_advantages)
                  9  the PPO-clip loss of one token                   (rl.policy_loss)
                 10  the KL estimators k1, k2, k3 of one sequence     (kl_estimators)
                 11  the share of groups with equal returns           (rl.equal_group_share)
    notebook 04  12  unit-level transitions (rose / fell)             (metrics.unit_count_transitions)
                 13  the unbiased pass@k estimator                    (metrics.pass_at_k; docs/glossary.md)
    notebook 05  14  read a seeded ablation: difference, separated?   (ablations.compare)
GRPO's std (exercise 8) is the library's: the sample std with the k - 1 divisor (torch.std's default,
as TRL's GRPO), with no ε here; for k = 2 that makes GRPO's advantages ±1/√2 ≈ ±0.707 whatever the gap.
"""
from __future__ import annotations

import ast
import inspect
import math
import textwrap
from typing import Callable, Sequence

GRPO_SCORES = (1.0, 0.9)  # exercise 8: one group of k = 2 scores
# exercise 4: the programs whose verdict on the test `assert f() == 1` (1 s of CPU time) the student predicts
PROGRAMS = {
    "returns True": "def f():\n    return True",
    "returns '1'": "def f():\n    return '1'",
    "prints 'passed', returns 0": "def f():\n    print('passed')\n    return 0",
    "exits while imported": "import sys\nsys.exit(0)\ndef f():\n    return 1",
    "turns AssertionError into ZeroDivisionError": "import builtins\nbuiltins.AssertionError = ZeroDivisionError\n"
                                                   "def f():\n    return 0",
    "sleeps 10 s": "import time\ndef f():\n    time.sleep(10)\n    return 1",
    "calls itself forever": "def f():\n    return f()",
}
VERDICTS = {  # what the executor says (tests/test_exercises.py runs them), and why
    "returns True": "passed",            # True == 1 in Python
    "returns '1'": "failed",             # '1' != 1: the assert fails
    "prints 'passed', returns 0": "failed",   # printed text reaches no verdict; 0 != 1
    "exits while imported": "error",     # SystemExit before f exists: the program did not pass
    "turns AssertionError into ZeroDivisionError": "failed",  # the judge runs the assert in its own process
    "sleeps 10 s": "timeout",            # the wall-clock backstop (2 x 1 s + 0.5 s) stops it
    "calls itself forever": "error",     # RecursionError: the stack runs out long before 1 s of CPU
}
# exercise 14: Acc@t2 (%) of two settings over three seeds
ABLATION = {"a": (86.0, 88.5, 85.5), "b": (84.0, 85.0, 86.0)}


class Unfinished(Exception):
    """The answer is not written yet (a stub), as opposed to written and wrong."""


def _stub(fn: Callable) -> bool:
    """True when fn's body (after its docstring) is only `...`, `pass` or `raise NotImplementedError`."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return False
    node = tree.body[0]
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return False
    body = node.body[1:] if (node.body and isinstance(node.body[0], ast.Expr)
                             and isinstance(node.body[0].value, ast.Constant)
                             and isinstance(node.body[0].value.value, str)) else node.body

    def empty(stmt) -> bool:
        if isinstance(stmt, ast.Pass):
            return True
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and stmt.value.value is Ellipsis:
            return True
        if isinstance(stmt, ast.Raise) and stmt.exc is not None:
            exc = stmt.exc.func if isinstance(stmt.exc, ast.Call) else stmt.exc
            return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"
        return False
    return all(empty(s) for s in body)


def _close(a, b, tol: float = 1e-6) -> bool:
    """Equal up to tol (float32 answers pass), element-wise for sequences and dicts; NaN equals NaN."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, (bool, str)) or isinstance(b, (bool, str)):
        return a == b
    try:
        x, y = float(a), float(b)
    except (TypeError, ValueError):
        return a == b
    return (math.isnan(x) and math.isnan(y)) or abs(x - y) <= tol


def _show(x) -> str:
    """x for a message: floats to 6 significant digits, inside lists, tuples and dicts too."""
    if isinstance(x, float):
        return f"{x:.6g}"
    if isinstance(x, (list, tuple)):
        inner = ", ".join(map(_show, x)) + ("," if isinstance(x, tuple) and len(x) == 1 else "")
        return f"[{inner}]" if isinstance(x, list) else f"({inner})"
    if isinstance(x, dict):
        return "{" + ", ".join(f"{k!r}: {_show(v)}" for k, v in x.items()) + "}"
    return repr(x)


def _call(n: int, name: str, fn: Callable, args: tuple):
    """fn(*args): a stub or a None result raises Unfinished, any other error a one-line AssertionError."""
    if _stub(fn):
        raise Unfinished(f"the body of {getattr(fn, '__name__', name)} is still a stub")
    try:
        got = fn(*args)
    except NotImplementedError:
        raise Unfinished(f"{getattr(fn, '__name__', name)} raises NotImplementedError") from None
    except Exception as exc:
        raise AssertionError(f"exercise {n}: {name}{args!r} raised {type(exc).__name__}: {exc}") from None
    if got is None:
        raise Unfinished(f"{name}{args!r} returned None: is the `return` missing?")
    return got


def _compare(n: int, name: str, fn: Callable, cases: Sequence[tuple[tuple, object]], hint: str,
             tol: float = 1e-6) -> None:
    for args, expected in cases:
        got = _call(n, name, fn, args)
        if not _close(got, expected, tol):
            raise AssertionError(f"exercise {n}: {name}{args!r}: expected {_show(expected)}, got {_show(got)} ({hint})")


def _done(n: int, message: str) -> None:
    print(f"✓ exercise {n}: {message}")


# ------------------------------------------------------------------ 01: the reflection failure

def check_transitions(fn: Callable) -> None:
    """fn(correct_t1, correct_t2) -> (i2c, c2i), shares of ALL problems."""
    T, F = True, False
    cases = [(([F, T, T, F], [T, T, F, F]), (1 / 4, 1 / 4)),   # problem 0 fixed, problem 2 broken, of 4
             (([T, T, T], [T, T, T]), (0.0, 0.0)),
             (([F, F, F, F], [F, F, F, T]), (1 / 4, 0.0)),
             (([F], [T]), (1.0, 0.0)),
             (([T, T, T], [T, F, F]), (0.0, 2 / 3))]
    _compare(1, "transitions", fn, cases, "both are shares of ALL problems, not of the wrong/right ones")
    _done(1, f"Δi→c and Δc→i are right on {len(cases)} hand-computed inputs")


def check_no_edit(fn: Callable) -> None:
    """fn(distances, threshold) -> share of distances <= threshold (NaN for no distances)."""
    cases = [(([0.0, 0.02, 0.3, 0.9], 0.05), 2 / 4), (([0.05, 0.05, 0.051], 0.05), 2 / 3), (([0.0, 0.0], 0.0), 1.0),
             (([0.4, 0.2], 0.5), 1.0), (([0.1], 0.05), 0.0), (([], 0.05), math.nan)]
    _compare(2, "no_edit", fn, cases, "d <= threshold counts as no edit; NaN when empty")
    _done(2, f"the no-edit rate is right on {len(cases)} hand-computed inputs")


# ------------------------------------------------------------------ 02: the executor and the rewards

def check_progressive(fn: Callable) -> None:
    """fn(outcomes) -> r_t = (1/K) * #passed, 0.0 for K = 0."""
    cases = [((["passed", "failed", "passed"],), 2 / 3), ((["error", "timeout", "passed", "failed"],), 1 / 4),
             ((["passed"],), 1.0), ((["error", "timeout"],), 0.0), (([],), 0.0)]
    _compare(3, "progressive", fn, cases, "only 'passed' counts; 0.0 when there are no tests")
    _done(3, f"r_t is right on {len(cases)} outcome lists")


def check_verdicts(fn: Callable) -> None:
    """fn() -> {program name: predicted outcome} for every program in PROGRAMS."""
    got = _call(4, "predictions", fn, ())
    if not isinstance(got, dict) or set(got) != set(PROGRAMS):
        raise AssertionError(f"exercise 4: return a dict with one prediction per name in PROGRAMS, got {_show(got)}")
    wrong = [name for name in PROGRAMS if got[name] != VERDICTS[name]]
    if wrong:
        raise AssertionError(f"exercise 4: {len(wrong)} of {len(PROGRAMS)} predictions are wrong, e.g. "
                             f"{wrong[0]!r}: you said {got[wrong[0]]!r} (outcomes: passed, failed, error, timeout)")
    _done(4, f"all {len(PROGRAMS)} verdicts predicted; run them with Executor().run_many to see the errors")


def check_gamma_cancels(fn: Callable) -> None:
    """fn(r1s, r2s, gamma) -> RLOO advantages of one group of T = 2 trajectories (beta = 0)."""
    shared = [(([1.0, 1.0], [1.0, 0.0], g), [1.0, -1.0]) for g in (0.0, 0.5, 1.0)]       # R_1 - R_2 = r2_1 - r2_2
    shared += [(([0.5] * 3, [1.0, 0.5, 0.0], g), [0.75, 0.0, -0.75]) for g in (0.0, 0.3)]  # r2_i - mean of others
    independent = [(([1.0, 0.0], [1.0, 0.0], 0.0), [0.0, 0.0]),     # R = (0, 0): no signal at γ = 0
                   (([1.0, 0.0], [1.0, 0.0], 0.5), [0.5, -0.5]),    # R = (0.5, 0)
                   (([1.0, 0.0], [1.0, 0.0], 1.0), [1.0, -1.0])]    # R = r_2 = (1, 0)
    _compare(5, "advantages", fn, shared + independent, "R_i = γ r_1 + (r_2 - r_1), then A_i = R_i - mean of the "
                                                         "others")
    _done(5, "with a shared r_1 the advantages are the same at every γ; with independent turn-1 samples they are not")


# ------------------------------------------------------------------ 03: training

def check_accumulated(fn: Callable) -> None:
    """fn(r1, r2, gamma) -> R for T = 2: R = γ r_1 + (r_2 - r_1)."""
    cases = [((0.0, 1.0, 0.5), 1.0), ((1.0, 1.0, 0.5), 0.5), ((0.0, 0.0, 0.5), 0.0), ((1.0, 0.0, 0.5), -0.5),
             ((1.0, 1.0, 0.0), 0.0), ((1.0, 0.0, 1.0), 0.0), ((1 / 3, 2 / 3, 0.5), 1 / 6 + 1 / 3),
             ((2 / 3, 1 / 3, 0.9), 0.6 - 1 / 3), ((0.5, 1.0, 0.25), 0.125 + 0.5)]
    _compare(6, "R", fn, cases, "R = gamma^(T-1) r_1 + sum_t gamma^(T-t) (r_t - r_(t-1)), T = 2")
    _done(6, f"R is right on {len(cases)} (r_1, r_2, γ)")


def check_rloo(fn: Callable) -> None:
    """fn(scores of one group, k >= 2) -> [A_1..A_k], A_i = s_i - mean of the others."""
    cases = [(([1.0, 0.5],), [0.5, -0.5]), (([0.0, 0.0, 0.0],), [0.0, 0.0, 0.0]),
             (([-0.5, 1.0, 0.25],), [-0.5 - 0.625, 1.0 + 0.125, 0.25 - 0.25]),
             (([1.0, 0.0, 0.0, 0.0],), [1.0, -1 / 3, -1 / 3, -1 / 3]),
             (([0.2, 0.4, 0.6, 0.8, 1.0, 0.0],), [0.2 - 2.8 / 5, 0.4 - 2.6 / 5, 0.6 - 2.4 / 5, 0.8 - 2.2 / 5,
                                                   1.0 - 2.0 / 5, 0.0 - 3.0 / 5])]
    _compare(7, "loo_advantages", fn, cases, "the baseline of s_i is the mean of the OTHER k-1 scores")
    _done(7, f"the advantages are right on {len(cases)} groups (k = 2..6)")


def check_grpo(fn: Callable) -> None:
    """fn() -> (RLOO A_1, GRPO A_1) for the group GRPO_SCORES = (1.0, 0.9)."""
    got = _call(8, "answer", fn, ())
    expected = (0.1, 0.05 / (0.1 / math.sqrt(2)))   # RLOO: 1.0 - 0.9; GRPO: (1.0 - 0.95) / std, std = 0.1/√2 (k - 1)
    if not _close(got, expected, 1e-6):
        raise AssertionError(f"exercise 8: for scores {GRPO_SCORES}: "
                             f"expected (RLOO A_1, GRPO A_1) = {_show(expected)}, got {_show(got)} "
                             "(GRPO divides by the sample std, the k - 1 divisor, as torch.std)")
    _done(8, f"RLOO A_1 = {expected[0]:.3g}, GRPO A_1 = {expected[1]:.3g}: with k = 2 GRPO gives ±1/√2 whatever the gap")


def check_ppo_clip(fn: Callable) -> None:
    """fn(logp, old_logp, advantage, eps) -> -min(ρ A, clip(ρ, 1 - eps, 1 + eps) A), ρ = exp(logp - old_logp)."""
    up, down = math.log(1.5), math.log(0.5)
    cases = [((-1.0, -1.0, 2.0, 0.2), -2.0),      # ρ = 1: -A
             ((up, 0.0, 1.0, 0.2), -1.2),         # ρ = 1.5, A > 0: clipped at 1.2
             ((up, 0.0, -1.0, 0.2), 1.5),         # ρ = 1.5, A < 0: min(-1.5, -1.2) = -1.5, not clipped
             ((down, 0.0, 1.0, 0.2), -0.5),       # ρ = 0.5, A > 0: min(0.5, 0.8) = 0.5, not clipped
             ((down, 0.0, -1.0, 0.2), 0.8),       # ρ = 0.5, A < 0: clipped at 0.8
             ((0.1, 0.0, 0.0, 0.2), 0.0)]         # A = 0
    _compare(9, "ppo_clip", fn, cases, "ρ = exp(logp - old_logp); loss = -min(ρ A, clip(ρ, 1-ε, 1+ε) A)")
    _done(9, "the clip acts only where it would push ρ further from 1 in the advantage's direction")


def check_kl(fn: Callable) -> None:
    """fn(logp, ref_logp) -> (k1, k2, k3) summed over the tokens of one sequence (r = ref_logp - logp)."""
    a = math.log(2.0)
    cases = [(([-1.0, -2.0], [-1.0, -2.0]), (0.0, 0.0, 0.0)),
             (([0.0], [-a]), (a, a * a / 2, 0.5 - 1 + a)),              # r = -ln 2: e^r = 1/2
             (([-a], [0.0]), (-a, a * a / 2, 2 - 1 - a)),               # r = +ln 2: e^r = 2
             (([0.0, -a], [-a, 0.0]), (0.0, a * a, 0.5 - 1 + a + 2 - 1 - a))]
    _compare(10, "kl", fn, cases, "k1 = Σ (logp - ref), k2 = Σ (logp - ref)² / 2, k3 = Σ (e^r - 1 - r), "
                                  "r = ref - logp")
    _done(10, "k1 can be negative on one sample, k2 and k3 cannot; all three estimate KL(π_θ || π_ref)")


def check_equal_groups(fn: Callable) -> None:
    """fn(returns, k) -> the share of groups (k consecutive returns) whose k returns are all equal."""
    cases = [(([0.5, 0.5, 1.0, 0.0], 2), 1 / 2), (([0.5, 0.5, 0.5, 0.5], 2), 1.0), (([0.0, 1.0, 1.0, 1.0], 4), 0.0),
             (([1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.5, 0.5, 1.0], 3), 2 / 3), (([0.25, 0.75], 2), 0.0)]
    _compare(11, "equal_share", fn, cases, "groups are k CONSECUTIVE returns; a group counts when all k are equal")
    _done(11, f"the share is right on {len(cases)} batches")


# ------------------------------------------------------------------ 04: evaluation

def check_unit_transitions(fn: Callable) -> None:
    """fn(passed_t1, passed_t2) -> (rose, fell): shares of problems whose passed-test count rose / fell."""
    T, F = True, False
    cases = [(([[F, F, T], [T, T, T], [T, F, F]], [[T, F, T], [T, F, T], [F, T, F]]), (1 / 3, 1 / 3)),  # 1->2, 3->2, 1->1
             (([[T, F], [F, F]], [[F, T], [F, F]]), (0.0, 0.0)), (([[F, F, F]], [[T, T, T]]), (1.0, 0.0)),
             (([[T, T], [T, F], [F, F]], [[F, F]] * 3), (0.0, 2 / 3)), (([[]], [[]]), (0.0, 0.0))]
    _compare(12, "unit_transitions", fn, cases, "per problem: compare the NUMBER of passed tests")
    _done(12, f"rose / fell are right on {len(cases)} inputs")


def check_pass_at_k(fn: Callable) -> None:
    """fn(n, c, k) -> the unbiased pass@k = 1 - C(n-c, k) / C(n, k)."""
    cases = [((10, 3, 1), 0.3), ((10, 3, 5), 1 - 21 / 252), ((10, 0, 3), 0.0), ((5, 5, 2), 1.0),
             ((5, 3, 3), 1.0), ((4, 1, 2), 1 - 3 / 6), ((1, 1, 1), 1.0), ((20, 1, 20), 1.0)]
    _compare(13, "pass_at_k", fn, cases, "1 - C(n-c, k) / C(n, k); 1.0 when n - c < k")
    _done(13, f"pass@k is right on {len(cases)} (n, c, k)")


# ------------------------------------------------------------------ 05: ablations

def check_separated(fn: Callable) -> None:
    """fn(a_seeds, b_seeds) -> (mean(a) - mean(b), separated): separated when the min-max ranges do not overlap."""
    cases = [((ABLATION["a"], ABLATION["b"]), (86.6666666667 - 85.0, False)),     # 85.5 <= 86.0: they overlap
             (((60.0, 64.5, 57.0), (47.0,)), (60.5 - 47.0, True)),               # 57.0 > 47.0
             (((31.0, 46.5, 46.0), (57.0, 64.5, 60.0)), (41.1666666667 - 60.5, True)),
             (((5.5, 46.0, 46.0), (31.0, 46.5, 46.0)), (32.5 - 41.1666666667, False)),
             (((1.0, 2.0), (2.0, 3.0)), (-1.0, False))]                          # touching ranges overlap
    _compare(14, "compare", fn, cases, "difference of the MEANS; separated only if min(a) > max(b) or max(a) < min(b)",
             tol=1e-6)
    _done(14, "you can read which differences three seeds separate")


CHECKS: dict[int, Callable] = {1: check_transitions, 2: check_no_edit, 3: check_progressive, 4: check_verdicts,
                               5: check_gamma_cancels, 6: check_accumulated, 7: check_rloo, 8: check_grpo,
                               9: check_ppo_clip, 10: check_kl, 11: check_equal_groups, 12: check_unit_transitions,
                               13: check_pass_at_k, 14: check_separated}


def self_check(n: int, fn: Callable) -> None:
    """Run exercise n's checker on fn; an unfinished answer prints "not finished yet" instead of failing."""
    try:
        CHECKS[n](fn)
    except Unfinished as why:
        print(f"· exercise {n}: not finished yet ({why}; write your code in the cell above)")
