"""Rewards: the paper's transition table, gamma edge cases, a hand-computed T = 3 example."""
import pytest

from cocos_lib.executor import TestReport
from cocos_lib.rewards import REWARDS, accumulated_reward, binary_reward, count_reward, progressive_reward

# (r_1, r_2) -> R for binary rewards: incorrect->correct, correct->correct, incorrect->incorrect, correct->incorrect
TABLES = {
    0.5: {(0, 1): 1.0, (1, 1): 0.5, (0, 0): 0.0, (1, 0): -0.5},  # docs/paper.md §3's table
    0.0: {(0, 1): 1.0, (1, 1): 0.0, (0, 0): 0.0, (1, 0): -1.0},  # only the improvement r_2 - r_1
    1.0: {(0, 1): 1.0, (1, 1): 1.0, (0, 0): 0.0, (1, 0): 0.0},   # only the last turn r_2
}


@pytest.mark.parametrize("gamma", sorted(TABLES))
def test_two_turn_binary_transition_table(gamma):
    for (r1, r2), want in TABLES[gamma].items():
        assert accumulated_reward([r1, r2], gamma) == pytest.approx(want)


def test_hand_computed_three_turns():
    # R = 0.5^2 * 0.2 + 0.5 * (0.5 - 0.2) + 1 * (1.0 - 0.5) = 0.05 + 0.15 + 0.5
    assert accumulated_reward([0.2, 0.5, 1.0], 0.5) == pytest.approx(0.7)
    # gamma = 0.9, r = (1, 0, 1): 0.81 * 1 + 0.9 * (0 - 1) + 1 * (1 - 0) = 0.91
    assert accumulated_reward([1, 0, 1], 0.9) == pytest.approx(0.91)
    assert accumulated_reward([0.2, 0.5, 1.0], 1.0) == pytest.approx(1.0)  # telescopes to r_T
    assert accumulated_reward([0.2, 0.5, 1.0], 0.0) == pytest.approx(0.5)  # r_T - r_{T-1}
    assert accumulated_reward([0.3], 0.5) == pytest.approx(0.3)            # T = 1: R = r_1


@pytest.mark.parametrize("bad, gamma, match", [([], 0.5, "empty"), ([0.1, float("nan")], 0.5, "finite"),
                                               ([1, 1], 1.5, "gamma"), ([1, 1], -0.1, "gamma")])
def test_accumulated_reward_rejects_bad_input(bad, gamma, match):
    with pytest.raises(ValueError, match=match):
        accumulated_reward(bad, gamma)


@pytest.mark.parametrize("outcomes, binary, progressive, count", [
    (("passed", "failed", "passed"), 0.0, 2 / 3, 2.0),
    (("passed", "passed", "passed"), 1.0, 1.0, 3.0),
    (("error", "timeout", "failed"), 0.0, 0.0, 0.0),
    (("passed", "timeout", "error", "passed"), 0.0, 0.5, 2.0),
    ((), 0.0, 0.0, 0.0),  # K = 0: no test can pass
])
def test_turn_rewards_from_reports(outcomes, binary, progressive, count):
    report = TestReport(outcomes)
    assert binary_reward(report) == binary
    assert progressive_reward(report) == pytest.approx(progressive)
    assert count_reward(report) == count
    assert {k: f(report) for k, f in REWARDS.items()} == pytest.approx(
        {"binary": binary, "progressive": progressive, "count": count})


def test_progressive_reward_drives_the_accumulated_reward():
    t1, t2 = TestReport(("passed", "failed", "failed")), TestReport(("passed", "passed", "failed"))
    r = [progressive_reward(t1), progressive_reward(t2)]
    assert accumulated_reward(r, 0.5) == pytest.approx(0.5 * 1 / 3 + (2 / 3 - 1 / 3))
