"""Metrics on hand-built records with hand-computed answers."""
import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cocos_lib import metrics as M


def _dp_levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


# 10 problems: 3 c->c, 1 c->i, 2 i->c, 4 i->i
T1 = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
T2 = [1, 1, 1, 0, 1, 1, 0, 0, 0, 0]


def test_transition_metrics_hand_computed():
    m = M.transition_metrics([bool(x) for x in T1], [bool(x) for x in T2])
    assert m == pytest.approx({"acc_t1": 0.4, "acc_t2": 0.5, "delta": 0.1, "i2c": 0.2, "c2i": 0.1})
    assert m["delta"] == pytest.approx(m["i2c"] - m["c2i"])


def test_transition_matrix_sums_to_one():
    m = M.transition_matrix(T1, T2)
    assert m == pytest.approx({"c2c": 0.3, "c2i": 0.1, "i2c": 0.2, "i2i": 0.4})
    assert sum(m.values()) == pytest.approx(1.0)


def test_paper_prompting_row_is_consistent():
    # simple prompting, docs/paper.md §6: Acc 43.8 -> 44.6, i2c 1.4, c2i 0.6 (500 MBPP test problems)
    n = 500
    c2c, c2i, i2c = 216, 3, 7          # 219/500 = 43.8 %, 3/500 = 0.6 %, 7/500 = 1.4 %
    t1 = [True] * c2c + [True] * c2i + [False] * i2c + [False] * (n - c2c - c2i - i2c)
    t2 = [True] * c2c + [False] * c2i + [True] * i2c + [False] * (n - c2c - c2i - i2c)
    m = M.transition_metrics(t1, t2)
    assert round(100 * m["acc_t1"], 1) == 43.8 and round(100 * m["acc_t2"], 1) == 44.6
    assert round(100 * m["delta"], 1) == 0.8


def test_transition_errors():
    with pytest.raises(M.MetricInputError, match="differ in length"):
        M.transition_metrics([True], [True, False])
    with pytest.raises(M.MetricInputError, match="no problems"):
        M.transition_metrics([], [])


def test_accuracy_gains_curve():
    turns = [[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 0, 1]]
    assert M.accuracy_by_turn(turns) == pytest.approx([0.25, 0.5, 0.75, 0.75])
    assert M.accuracy_gains(turns) == pytest.approx([0.0, 0.25, 0.5, 0.5])


def test_unit_count_transitions():
    a = [(1, 0, 0), (1, 1, 0), (1, 1, 1), (0, 0, 0)]
    b = [(1, 1, 0), (0, 1, 1), (1, 0, 0), (0, 0, 0)]  # rose, same (2->2), fell, same
    assert M.unit_count_transitions(a, b) == pytest.approx({"rose": 0.25, "fell": 0.25, "same": 0.5})


def test_unit_test_transitions():
    a = [(1, 0, 0), (1, 1, 0), (1, 1, 1), (0, 0, 0)]
    b = [(1, 1, 0), (0, 1, 1), (1, 0, 0), (0, 0, 0)]
    # 12 tests: f->p at (0,1), (1,2) = 2; p->f at (1,0), (2,1), (2,2) = 3
    assert M.unit_test_transitions(a, b) == pytest.approx({"f2p": 2 / 12, "p2f": 3 / 12})
    with pytest.raises(M.MetricInputError, match="problem 0 has 2 vs 3 tests"):
        M.unit_test_transitions([(1, 0)], [(1, 0, 0)])


def test_levenshtein_known_values():
    assert M.levenshtein("kitten", "sitting") == 3
    assert M.levenshtein("", "abc") == 3
    assert M.levenshtein("flaw", "lawn") == 2
    assert M.levenshtein("abc", "abc") == 0
    assert M.normalized_edit_distance("kitten", "sitting") == pytest.approx(3 / 7)
    assert M.normalized_edit_distance("", "") == 0.0
    assert M.normalized_edit_distance("abc", "") == 1.0


def test_levenshtein_long_programs_fast():
    a = "def f(x):\n    return x + 1\n" * 80
    b = a.replace("x + 1", "x - 1", 3)
    assert M.levenshtein(a, b) == 3
    assert M.normalized_edit_distance(a, b) == pytest.approx(3 / len(a))


text = st.text(alphabet="ab c\n()", max_size=14)


@settings(max_examples=300, deadline=None)
@given(text, text)
def test_levenshtein_matches_dynamic_programming(a, b):
    assert M.levenshtein(a, b) == _dp_levenshtein(a, b)


@settings(max_examples=200, deadline=None)
@given(text, text, text)
def test_edit_distance_properties(a, b, c):
    assert M.levenshtein(a, a) == 0 and M.normalized_edit_distance(a, a) == 0.0
    assert M.levenshtein(a, b) == M.levenshtein(b, a)
    assert M.levenshtein(a, c) <= M.levenshtein(a, b) + M.levenshtein(b, c)
    assert abs(len(a) - len(b)) <= M.levenshtein(a, b) <= max(len(a), len(b))
    d = M.normalized_edit_distance(a, b)
    assert 0.0 <= d <= 1.0 and (d == 0.0) == (a == b)


def test_no_edit_rate_and_conditioned_on_wrong():
    d = [0.0, 0.04, 0.05, 0.2, 0.6]
    wrong = [True, True, False, True, False]
    assert M.no_edit_rate(d) == pytest.approx(3 / 5)            # 0.0, 0.04, 0.05 (<= 0.05)
    assert M.no_edit_rate(d, threshold=0.01) == pytest.approx(1 / 5)
    assert M.no_edit_rate(d, wrong=wrong) == pytest.approx(2 / 3)  # wrong: 0.0, 0.04, 0.2
    assert math.isnan(M.no_edit_rate(d, wrong=[False] * 5))


def test_pass_at_k_known_values():
    assert M.pass_at_k(10, 0, 1) == 0.0
    assert M.pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert M.pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)      # 1 - C(3,2)/C(5,2)
    assert M.pass_at_k(4, 3, 2) == 1.0                            # n - c < k
    assert M.pass_at_k(200, 1, 100) == pytest.approx(0.5)
    assert M.mean_pass_at_k([5, 10], [2, 3], 1) == pytest.approx((0.4 + 0.3) / 2)
    with pytest.raises(M.MetricInputError, match="k <= n"):
        M.pass_at_k(3, 1, 4)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 9).flatmap(
    lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_equals_subset_enumeration(nck):
    n, c, k = nck
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    brute = sum(any(samples[i] for i in s) for s in subsets) / len(subsets)
    assert M.pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12)


def test_paired_bootstrap_by_hand():
    from cocos_lib.metrics import MetricInputError, paired_bootstrap
    same = paired_bootstrap([1, 0, 1, 0], [1, 0, 1, 0], n_boot=200)
    assert same["diff"] == same["lo"] == same["hi"] == 0.0          # no difference on any task: a point
    all_up = paired_bootstrap([0] * 5, [1] * 5, n_boot=200)
    assert all_up["diff"] == all_up["lo"] == all_up["hi"] == 1.0    # every task improved by 1
    # 2 of 10 tasks improve by 1: diff 0.2; resampled means lie on the grid j/10 between 0 and 1, and the
    # 95% interval of a Binomial(10, 0.2)/10 holds 0 and 0.5 but not 0.8
    r = paired_bootstrap([0] * 10, [1, 1] + [0] * 8, n_boot=4000, seed=3)
    assert r["diff"] == pytest.approx(0.2) and r["lo"] == 0.0 and 0.4 <= r["hi"] <= 0.5
    assert paired_bootstrap([0] * 10, [1, 1] + [0] * 8, n_boot=4000, seed=3) == r   # seeded
    with pytest.raises(MetricInputError, match="differ in length"):
        paired_bootstrap([1], [1, 0])
