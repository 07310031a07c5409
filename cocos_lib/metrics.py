"""Pure multi-turn metrics: transitions, unit-level variants, edit distances, pass@k.

Everything here works on plain Python sequences (no torch, no pandas) so it can be
tested on hand-built records. Notation follows docs/paper.md §5: a *problem* is one task (or
one sampled trajectory of it); "correct at turn t" means all K unit tests pass.

All shares are fractions in [0, 1] of ALL problems (not of the wrong / right subset),
exactly as the paper's Delta columns:

    Acc@t         = mean_i 1{correct_i(t)}
    Delta(t1,t2)  = Acc@t2 - Acc@t1            (= i2c - c2i)
    Delta i->c    = mean_i 1{not correct_i(t1) and correct_i(t2)}
    Delta c->i    = mean_i 1{correct_i(t1) and not correct_i(t2)}   (lower is better)
"""
from __future__ import annotations

import math
import random
from collections.abc import Sequence

DEFAULT_NO_EDIT_THRESHOLD = 0.05  # docs/paper.md §7: "normalised edit distance <= 0.05"


class MetricInputError(ValueError):
    """Inconsistent metric input (lengths differ, empty input, bad k ...)."""


def _check_pair(a: Sequence, b: Sequence, what: str) -> int:
    if len(a) != len(b):
        raise MetricInputError(f"{what}: turn sequences differ in length ({len(a)} vs {len(b)})")
    if len(a) == 0:
        raise MetricInputError(f"{what}: no problems given")
    return len(a)


# --------------------------------------------------------------------------- transitions

def transition_matrix(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> dict[str, float]:
    """Turn-pair transition shares for any t -> t+1: {c2c, c2i, i2c, i2i}, summing to 1."""
    n = _check_pair(correct_a, correct_b, "transition_matrix")
    counts = {"c2c": 0, "c2i": 0, "i2c": 0, "i2i": 0}
    for a, b in zip(correct_a, correct_b):
        counts[("c" if a else "i") + "2" + ("c" if b else "i")] += 1
    return {key: value / n for key, value in counts.items()}


def transition_metrics(correct_t1: Sequence[bool], correct_t2: Sequence[bool]) -> dict[str, float]:
    """(contract) {acc_t1, acc_t2, delta, i2c, c2i} as fractions of all problems."""
    m = transition_matrix(correct_t1, correct_t2)
    acc_t1 = m["c2c"] + m["c2i"]
    acc_t2 = m["c2c"] + m["i2c"]
    return {"acc_t1": acc_t1, "acc_t2": acc_t2, "delta": acc_t2 - acc_t1,
            "i2c": m["i2c"], "c2i": m["c2i"]}


def accuracy_by_turn(correct_by_turn: Sequence[Sequence[bool]]) -> list[float]:
    """[Acc@t1, Acc@t2, ...] from one correctness sequence per turn."""
    if not correct_by_turn:
        raise MetricInputError("accuracy_by_turn: no turns given")
    n = len(correct_by_turn[0])
    for t, col in enumerate(correct_by_turn, start=1):
        _check_pair(correct_by_turn[0], col, f"accuracy_by_turn (turn {t})")
    return [sum(bool(x) for x in col) / n for col in correct_by_turn]


def accuracy_gains(correct_by_turn: Sequence[Sequence[bool]]) -> list[float]:
    """The paper's beyond-two-turns curve: [Acc@tk - Acc@t1 for k = 1..T] (first entry 0)."""
    acc = accuracy_by_turn(correct_by_turn)
    return [a - acc[0] for a in acc]


# --------------------------------------------------------------------------- unit level
# The paper reports Delta^{i->c}_unit / Delta^{c->i}_unit without publishing a definition.
# Two readings are offered, both as fractions:
#   count reading ("rose"/"fell"): share of problems whose number of passed tests rose /
#       fell from t to t+1 (closest to the released code);
#   per-test reading ("f2p"/"p2f"): share of all (problem, test) pairs that went
#       failed -> passed / passed -> failed.

def unit_count_transitions(passed_a: Sequence[Sequence[bool]],
                           passed_b: Sequence[Sequence[bool]]) -> dict[str, float]:
    """{rose, fell, same}: share of problems whose passed-test count rose / fell / stayed."""
    n = _check_pair(passed_a, passed_b, "unit_count_transitions")
    rose = fell = 0
    for i, (a, b) in enumerate(zip(passed_a, passed_b)):
        if len(a) != len(b):
            raise MetricInputError(f"unit_count_transitions: problem {i} has {len(a)} vs {len(b)} tests")
        ca, cb = sum(map(bool, a)), sum(map(bool, b))
        rose += cb > ca
        fell += cb < ca
    return {"rose": rose / n, "fell": fell / n, "same": (n - rose - fell) / n}


def unit_test_transitions(passed_a: Sequence[Sequence[bool]],
                          passed_b: Sequence[Sequence[bool]]) -> dict[str, float]:
    """{f2p, p2f}: share of ALL (problem, test) pairs that went fail->pass / pass->fail."""
    _check_pair(passed_a, passed_b, "unit_test_transitions")
    total = f2p = p2f = 0
    for i, (a, b) in enumerate(zip(passed_a, passed_b)):
        if len(a) != len(b):
            raise MetricInputError(f"unit_test_transitions: problem {i} has {len(a)} vs {len(b)} tests")
        for x, y in zip(a, b):
            total += 1
            f2p += (not x) and bool(y)
            p2f += bool(x) and not y
    if total == 0:
        return {"f2p": 0.0, "p2f": 0.0}
    return {"f2p": f2p / total, "p2f": p2f / total}


# --------------------------------------------------------------------------- edit distance

def levenshtein(a: str, b: str) -> int:
    """Exact Levenshtein distance (unit insert / delete / substitute).

    Bit-parallel algorithm of Myers (1999) in Hyyrö's (2001) formulation, with Python's
    unbounded ints as the bit vector: O(len(a)) big-int operations of width len(b), so two
    2 kB programs take about a millisecond. Common prefix and suffix are stripped first.
    """
    if a == b:
        return 0
    start = 0
    while start < len(a) and start < len(b) and a[start] == b[start]:
        start += 1
    a, b = a[start:], b[start:]
    end = 0
    while end < len(a) and end < len(b) and a[-1 - end] == b[-1 - end]:
        end += 1
    if end:
        a, b = a[:-end], b[:-end]
    if len(a) < len(b):
        a, b = b, a
    m = len(b)
    if m == 0:
        return len(a)
    peq: dict[str, int] = {}
    for i, ch in enumerate(b):
        peq[ch] = peq.get(ch, 0) | (1 << i)
    full, top = (1 << m) - 1, 1 << (m - 1)
    pv, mv, score = full, 0, m
    for ch in a:
        eq = peq.get(ch, 0)
        xv = eq | mv
        xh = (((eq & pv) + pv) ^ pv) | eq
        ph = (mv | ~(xh | pv)) & full
        mh = pv & xh
        if ph & top:
            score += 1
        elif mh & top:
            score -= 1
        ph = ((ph << 1) | 1) & full
        mh = (mh << 1) & full
        pv = (mh | ~(xv | ph)) & full
        mv = ph & xv
    return score


def normalized_edit_distance(a: str, b: str) -> float:
    """Levenshtein(a, b) / max(len(a), len(b)) in [0, 1]; 0.0 for two identical (or empty) strings."""
    longest = max(len(a), len(b))
    return 0.0 if longest == 0 else levenshtein(a, b) / longest


def no_edit_rate(distances: Sequence[float], threshold: float = DEFAULT_NO_EDIT_THRESHOLD,
                 wrong: Sequence[bool] | None = None) -> float:
    """Share of revisions with normalised edit distance <= threshold.

    With ``wrong`` (one flag per revision: is the revised answer wrong?) the share is
    taken over the wrong revisions only: the paper's "left almost unchanged in 93% of the
    cases where the second answer is wrong". Returns NaN if nothing is counted.
    """
    if wrong is not None:
        _check_pair(distances, wrong, "no_edit_rate")
        distances = [d for d, w in zip(distances, wrong) if w]
    if len(distances) == 0:
        return math.nan
    return sum(d <= threshold for d in distances) / len(distances)


# --------------------------------------------------------------------------- pass@k

def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): 1 - C(n-c, k) / C(n, k) from n samples, c correct.

    Computed as 1 - prod_{i=n-c+1}^{n} (1 - k / i), which never forms a huge binomial.
    """
    if not (0 <= c <= n) or not (1 <= k <= n):
        raise MetricInputError(f"pass_at_k: need 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def mean_pass_at_k(ns: Sequence[int], cs: Sequence[int], k: int) -> float:
    """pass@k averaged over problems, each with its own (n, c)."""
    _check_pair(ns, cs, "mean_pass_at_k")
    return sum(pass_at_k(n, c, k) for n, c in zip(ns, cs)) / len(ns)


# --------------------------------------------------------------------------- paired bootstrap

def paired_bootstrap(before: Sequence[float], after: Sequence[float], n_boot: int = 10_000, level: float = 0.95,
                     seed: int = 0) -> dict[str, float]:
    """Difference of means after - before over the same problems, with a paired bootstrap interval.

    d_i = after_i - before_i per problem (e.g. 1{correct} of the trained and of the base model on task i);
    diff = mean_i d_i; each of n_boot resamples draws n problems with replacement and takes the mean of
    their d_i; [lo, hi] are the (1 - level)/2 and (1 + level)/2 quantiles of those means (percentile
    method). Tasks, not samples, are resampled, so the interval covers which tasks were drawn."""
    n = _check_pair(before, after, "paired_bootstrap")
    if n_boot < 1 or not 0 < level < 1:
        raise MetricInputError(f"paired_bootstrap: n_boot={n_boot} must be >= 1 and level={level} in (0, 1)")
    d = [float(a) - float(b) for a, b in zip(after, before)]
    rng, idx = random.Random(seed), range(n)
    means = sorted(sum(d[i] for i in rng.choices(idx, k=n)) / n for _ in range(n_boot))
    lo_i = int(math.floor((1 - level) / 2 * (n_boot - 1)))
    hi_i = int(math.ceil((1 + level) / 2 * (n_boot - 1)))
    return {"diff": sum(d) / n, "lo": means[lo_i], "hi": means[hi_i], "n": n, "n_boot": n_boot, "level": level}
