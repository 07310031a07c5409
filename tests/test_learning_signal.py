"""learning_signal on hand-built trajectories: edits, repairs, breakages, unequal groups at each k."""
from types import SimpleNamespace

from cocos_lib.learning_signal import correction_stats, summarise, unequal_share
from cocos_lib.trajectory import Trajectory, Turn


def turn(code: str, passed: bool, reward: float) -> Turn:
    return Turn([], [], code, code, SimpleNamespace(all_passed=passed), reward)


def group(g: int, first: tuple, seconds: list[tuple]) -> list[Trajectory]:
    """k samples sharing turn 1 `first` = (code, passed, reward); seconds[s] = turn 2 of sample s."""
    return [Trajectory(task=None, turns=[turn(*first), turn(*sec)], group=g, sample=s) for s, sec in enumerate(seconds)]


# group 0: wrong turn 1; sample 0 repeats it, 1 repairs it, 2 edits without repairing, 3 repeats (k = 4)
# group 1: right turn 1; samples 0-1 repeat it, 2 breaks it, 3 repeats
TRAJS = (group(0, ("bad", False, 0.0), [("bad", False, 0.0), ("good", True, 1.0), ("worse", False, 0.0),
                                         (" bad\n", False, 0.0)])
         + group(1, ("ok", True, 1.0), [("ok", True, 1.0), ("ok", True, 1.0), ("broken", False, 0.33),
                                        ("ok", True, 1.0)]))


def test_correction_stats_by_hand():
    # edits: group 0 samples 1, 2 (sample 3 differs in surrounding whitespace only); group 1 sample 2 -> 3 of 8
    assert correction_stats(TRAJS) == {"edit_t2": 3 / 8, "i2c_t2": 1 / 8, "c2i_t2": 1 / 8}


def test_unequal_share_at_each_k():
    # k = 2: group 0's first two samples differ (0 vs 1), group 1's do not (1, 1) -> 1 of 2
    assert unequal_share(TRAJS, 2) == 0.5
    # k = 4: both groups hold a differing sample
    assert unequal_share(TRAJS, 4) == 1.0
    s = summarise(TRAJS, [2, 4])
    assert s["unequal_by_k"] == {"2": 0.5, "4": 1.0} and s["groups"] == 2 and s["samples"] == 8 and s["acc_t1"] == 0.5
