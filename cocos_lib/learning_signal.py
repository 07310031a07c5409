"""How much a batch of rollouts can teach: unequal groups, edits, repairs and breakages among corrections.

RLOO learns only from groups whose k returns differ: with one shared turn 1 per prompt (the released
setting) R differs inside a group only through r_2, so a group teaches nothing when its k corrections
all score the same. Before sizing a run, measure how often that happens (`measure`), and while it runs
log what the corrections do (`correction_stats`, a part of every metrics.jsonl line;
benchmarks/signal_probe.py runs the measurement on its own):

    edit      share of turn-2 samples whose code differs from the turn-1 code they correct
    i2c, c2i  share of turn-2 samples that repair a wrong turn 1 (all tests fail -> pass) / break a right one
    unequal   share of groups whose k turn-2 rewards are not all equal (1 - rl's equal_groups)
"""
from __future__ import annotations

from typing import Sequence

from cocos_lib.trajectory import Trajectory


def correction_stats(trajs: Sequence[Trajectory], turn: int = 2) -> dict:
    """edit / i2c / c2i among the samples' turn `turn` against turn `turn - 1` (fractions of all samples)."""
    pairs = [(tr.turns[turn - 2], tr.turns[turn - 1]) for tr in trajs if len(tr.turns) >= turn]
    if not pairs:
        return {}
    n = len(pairs)
    return {f"edit_t{turn}": sum(a.code.strip() != b.code.strip() for a, b in pairs) / n,
            f"i2c_t{turn}": sum(not a.report.all_passed and b.report.all_passed for a, b in pairs) / n,
            f"c2i_t{turn}": sum(a.report.all_passed and not b.report.all_passed for a, b in pairs) / n}


def unequal_share(trajs: Sequence[Trajectory], k: int, turn: int = 2) -> float:
    """Share of groups (consecutive blocks of the first `k` samples of each group) whose turn-`turn` rewards differ."""
    groups: dict[int, list[float]] = {}
    for tr in trajs:
        if tr.sample < k:
            groups.setdefault(tr.group, []).append(tr.turns[turn - 1].reward)
    return sum(len(set(r)) > 1 for r in groups.values()) / max(len(groups), 1)


def summarise(trajs: Sequence[Trajectory], ks: Sequence[int]) -> dict:
    """Per k in `ks` (each <= the rollout's k): the unequal-group share using each group's first k samples;
    plus correction_stats over every sample and turn-1 accuracy over the groups."""
    firsts = [tr for tr in trajs if tr.sample == 0]
    return {"groups": len(firsts), "samples": len(trajs),
            "acc_t1": sum(tr.turns[0].report.all_passed for tr in firsts) / max(len(firsts), 1),
            **correction_stats(trajs), "unequal_by_k": {str(k): unequal_share(trajs, k) for k in ks}}


def signal_metrics(trajs: Sequence[Trajectory], turns: int, k: int) -> dict:
    """A metrics.jsonl line's share: correction_stats of every turn t >= 2, and unequal_k{j}, the share of groups
    whose last-turn rewards differ among their first j samples, for j = 2, 4, 8 below the run's k."""
    m = {}
    for t in range(2, turns + 1):
        m.update(correction_stats(trajs, t))
    if turns >= 2:
        m.update({f"unequal_k{j}": unequal_share(trajs, j, turns) for j in (2, 4, 8) if j < k})
    return m
