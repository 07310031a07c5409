"""Checkers for notebooks/exercises: each compares the student's function with the library's own.

One checker per exercise (numbered as in notebooks/exercises/exercises.ipynb). A checker calls the
student's function on several inputs, edge cases included, and compares the result with what the
library computes on the same input. It prints one line "✓ exercise N: ..." or raises AssertionError
in one line naming the input, the expected value and the value it got. `self_check(n, fn)` is what
the notebook cells call: a stub that still raises NotImplementedError prints "not attempted yet".

    1  Δi→c, Δc→i from two lists of booleans          metrics.transition_metrics
    2  the no-edit rate with a threshold               metrics.no_edit_rate
    3  the progressive reward from test outcomes       rewards.progressive_reward
    4  a candidate that reads the parent's secret      executor (it must refuse)
    5  R for T = 2 from r_1, r_2, gamma                rewards.accumulated_reward
    6  leave-one-out advantages of one group           rl.rloo_advantages
    7  RLOO against GRPO's mean/std normalisation      rl.rloo_advantages
    8  unit-level transitions (rose / fell)            metrics.unit_count_transitions
    9  the unbiased pass@k estimator                   metrics.pass_at_k
"""
from __future__ import annotations

import math
import os
import random
import secrets
import statistics
import subprocess
import sys
from typing import Callable, Sequence

from cocos_lib import metrics, rewards
from cocos_lib.executor import Job, TestReport, open_executor

SECRET_NAME = "COCOS_EXERCISE_SECRET"  # exercise 4: the variable the attack looks for
GRPO_SCORES = (1.0, 0.9)  # exercise 7: one group of k = 2 scores


def _close(a, b, tol: float = 1e-9) -> bool:
    """Equal up to tol, element-wise for sequences and dicts; NaN equals NaN."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b))
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
    """fn(*args); any error but NotImplementedError (an untouched stub) becomes a one-line AssertionError."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise
    except Exception as exc:
        raise AssertionError(f"exercise {n}: {name}{args!r} raised {type(exc).__name__}: {exc}") from None


def _compare(n: int, name: str, fn: Callable, reference: Callable, cases: Sequence[tuple], hint: str) -> None:
    for args in cases:
        expected = reference(*args)
        got = _call(n, name, fn, args)
        if not _close(got, expected):
            raise AssertionError(f"exercise {n}: {name}{args!r}: expected {_show(expected)}, got {_show(got)} ({hint})")


def _done(n: int, message: str) -> None:
    print(f"✓ exercise {n}: {message}")


# ------------------------------------------------------------------ 01: the reflection failure

def check_transitions(fn: Callable) -> None:
    """fn(correct_t1, correct_t2) -> (i2c, c2i), shares of ALL problems."""
    def reference(a, b):
        m = metrics.transition_metrics(a, b)
        return (m["i2c"], m["c2i"])
    cases = [([False, True, True, False], [True, True, False, False]), ([True] * 3, [True] * 3),
             ([False] * 4, [False, False, False, True]), ([False], [True]), ([True, True, True], [True, False, False])]
    _compare(1, "transitions", fn, reference, cases, "both are shares of ALL problems, not of the wrong/right ones")
    _done(1, f"Δi→c and Δc→i match metrics.transition_metrics on {len(cases)} inputs")


def check_no_edit(fn: Callable) -> None:
    """fn(distances, threshold) -> share of distances <= threshold (NaN for no distances)."""
    cases = [([0.0, 0.02, 0.3, 0.9], 0.05), ([0.05, 0.05, 0.051], 0.05), ([0.0, 0.0], 0.0), ([0.4, 0.2], 0.5),
             ([0.1], 0.05), ([], 0.05)]
    _compare(2, "no_edit", fn, metrics.no_edit_rate, cases, "d <= threshold counts as no edit; NaN when empty")
    _done(2, f"the no-edit rate matches metrics.no_edit_rate on {len(cases)} inputs")


# ------------------------------------------------------------------ 02: the executor and the rewards

def check_progressive(fn: Callable) -> None:
    """fn(outcomes) -> r_t = (1/K) * #passed, 0.0 for K = 0."""
    def reference(outcomes):
        return rewards.progressive_reward(TestReport(tuple(outcomes)))
    cases = [(["passed", "failed", "passed"],), (["error", "timeout", "passed", "failed"],), (["passed"],),
             (["error", "timeout"],), ([],)]
    _compare(3, "progressive", fn, reference, cases, "only 'passed' counts; 0.0 when there are no tests")
    _done(3, f"r_t matches rewards.progressive_reward on {len(cases)} outcome lists")


def _outside(code: str, secret: str | None) -> int:
    """Exit status of `code` + `sys.exit(0 if f() == 1 else 3)` in a plain, unconfined child process."""
    env = {k: v for k, v in os.environ.items() if k != SECRET_NAME}
    if secret is not None:
        env[SECRET_NAME] = secret
    probe = code + "\nimport sys\nsys.exit(0 if f() == 1 else 3)\n"
    try:
        return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, timeout=20).returncode
    except subprocess.TimeoutExpired:
        return -1


def check_sandbox(fn: Callable, executor=None) -> None:
    """fn() -> the source of a program whose f() returns 1 only if it sees os.environ[SECRET_NAME].

    The program runs twice UNCONFINED (plain subprocesses, 20 s each) to show the attack works, then once in
    `executor` (default: a fresh open_executor(workers=1)), with the secret set in this process meanwhile."""
    code = _call(4, "attack", fn, ())
    if not isinstance(code, str):
        raise AssertionError(f"exercise 4: attack() must return the program's source as a str, "
                             f"got {type(code).__name__}")
    secret = secrets.token_hex(8)
    if _outside(code, secret) != 0:
        raise AssertionError(f"exercise 4: outside the sandbox, with {SECRET_NAME} set, f() did not return 1: "
                             "not an attack yet (read os.environ)")
    if _outside(code, None) == 0:
        raise AssertionError(f"exercise 4: f() returns 1 even without {SECRET_NAME}: make it depend on the secret")
    old = os.environ.get(SECRET_NAME)
    os.environ[SECRET_NAME] = secret  # in THIS process: the sandbox must not pass it on
    try:
        ex = executor or open_executor(workers=1)
        try:
            report = ex.run_many([Job(code, ["assert f() == 1"], timeout_s=3.0)])[0]
        finally:
            if executor is None:
                ex.close()
    finally:
        if old is None:
            del os.environ[SECRET_NAME]
        else:
            os.environ[SECRET_NAME] = old
    if report.outcomes == ("passed",):
        raise AssertionError("exercise 4: the sandboxed f() saw the secret and passed: a sandbox bug, please report it")
    _done(4, f"f() sees the secret outside (returns 1), the executor refused it (outcome {report.outcomes[0]!r})")


# ------------------------------------------------------------------ 03: training

def check_accumulated(fn: Callable) -> None:
    """fn(r1, r2, gamma) -> R for T = 2."""
    def reference(r1, r2, gamma):
        return rewards.accumulated_reward([r1, r2], gamma)
    cases = [(r1, r2, 0.5) for r1 in (0.0, 1.0) for r2 in (0.0, 1.0)]
    cases += [(1.0, 1.0, 0.0), (1.0, 0.0, 1.0), (1 / 3, 2 / 3, 0.5), (2 / 3, 1 / 3, 0.9), (0.5, 1.0, 0.25)]
    _compare(5, "R", fn, reference, cases, "R = gamma^(T-1) r_1 + sum_t gamma^(T-t) (r_t - r_(t-1)), T = 2")
    _done(5, f"R matches rewards.accumulated_reward on {len(cases)} (r_1, r_2, gamma)")


def _rloo(scores: Sequence[float]) -> list[float]:
    import torch  # heavy: only exercises 6 and 7 need it

    from cocos_lib.rl import rloo_advantages
    return rloo_advantages(torch.tensor([list(scores)], dtype=torch.float64))[0].tolist()


def check_rloo(fn: Callable) -> None:
    """fn(scores of one group, k >= 2) -> [A_1..A_k], A_i = s_i - mean of the others."""
    rng = random.Random(0)
    cases = [([1.0, 0.5],), ([0.0, 0.0, 0.0],), ([-0.5, 1.0, 0.25],)]
    cases += [([round(rng.uniform(-1, 1), 3) for _ in range(k)],) for k in (2, 3, 4, 6, 8)]
    _compare(6, "loo_advantages", fn, _rloo, cases, "the baseline of s_i is the mean of the OTHER k-1 scores")
    _done(6, f"advantages match rl.rloo_advantages on {len(cases)} groups (k = 2..8)")


def _grpo(scores: Sequence[float]) -> list[float]:
    """GRPO's normalised advantage (s_i - mean) / std, population std (eps = 0)."""
    mean, std = statistics.fmean(scores), statistics.pstdev(scores)
    return [(s - mean) / std for s in scores]


def check_grpo(fn: Callable) -> None:
    """fn() -> (RLOO A_1, GRPO A_1) for the group GRPO_SCORES."""
    got = _call(7, "answer", fn, ())
    expected = (_rloo(GRPO_SCORES)[0], _grpo(GRPO_SCORES)[0])
    if not _close(got, expected):
        raise AssertionError(f"exercise 7: for scores {GRPO_SCORES}: "
                             f"expected (RLOO A_1, GRPO A_1) = {_show(expected)}, "
                             f"got {_show(got)} (GRPO divides by the population std)")
    _done(7, f"RLOO A_1 = {expected[0]:.3g}, GRPO A_1 = {expected[1]:.3g}: with k = 2 GRPO gives ±1 whatever the gap")


# ------------------------------------------------------------------ 04: evaluation

def check_unit_transitions(fn: Callable) -> None:
    """fn(passed_t1, passed_t2) -> (rose, fell): shares of problems whose passed-test count rose / fell."""
    def reference(a, b):
        m = metrics.unit_count_transitions(a, b)
        return (m["rose"], m["fell"])
    T, F = True, False
    cases = [([[F, F, T], [T, T, T], [T, F, F]], [[T, F, T], [T, F, T], [F, T, F]]),
             ([[T, F], [F, F]], [[F, T], [F, F]]), ([[F, F, F]], [[T, T, T]]), ([[T, T], [T, F], [F, F]], [[F, F]] * 3),
             ([[]], [[]])]
    _compare(8, "unit_transitions", fn, reference, cases, "per problem: compare the NUMBER of passed tests")
    _done(8, f"rose / fell match metrics.unit_count_transitions on {len(cases)} inputs")


def check_pass_at_k(fn: Callable) -> None:
    """fn(n, c, k) -> the unbiased pass@k = 1 - C(n-c, k) / C(n, k)."""
    cases = [(10, 3, 1), (10, 3, 5), (10, 0, 3), (5, 5, 2), (5, 3, 3), (200, 13, 10), (1, 1, 1), (20, 1, 20)]
    _compare(9, "pass_at_k", fn, metrics.pass_at_k, cases, "1 - C(n-c, k) / C(n, k); 1.0 when n - c < k")
    _done(9, f"pass@k matches metrics.pass_at_k on {len(cases)} (n, c, k)")


CHECKS: dict[int, Callable] = {1: check_transitions, 2: check_no_edit, 3: check_progressive, 4: check_sandbox,
                               5: check_accumulated, 6: check_rloo, 7: check_grpo, 8: check_unit_transitions,
                               9: check_pass_at_k}


def self_check(n: int, fn: Callable, **kwargs) -> None:
    """Run exercise n's checker on fn; an untouched stub (NotImplementedError) prints "not attempted yet"."""
    try:
        CHECKS[n](fn, **kwargs)
    except NotImplementedError:
        print(f"· exercise {n}: not attempted yet (write your code in the cell above)")
