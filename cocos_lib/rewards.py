"""Turn rewards r_t from a test report, and the accumulated reward R of a trajectory (pure).

A task has K unit tests u_1..u_K; y_t is the code of turn t; `report` is its TestReport.
    binary       r_t = 1{all K tests pass}
    progressive  r_t = (1/K) * sum_k 1{u_k(y_t) passes}          (the paper; 0.0 when K = 0)
    count        r_t = sum_k 1{u_k(y_t) passes}                  (the released code: no 1/K)
    accumulated  R = gamma^(T-1) * r_1 + sum_{t=2..T} gamma^(T-t) * (r_t - r_{t-1})
For T = 2: R = gamma * r_1 + (r_2 - r_1). Binary rewards, gamma = 0.5: incorrect->correct 1,
correct->correct 0.5, incorrect->incorrect 0, correct->incorrect -0.5. gamma = 0 rewards only the
last improvement r_T - r_{T-1}; gamma = 1 telescopes to the last turn's reward r_T.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence


def binary_reward(report) -> float:
    """r_t = 1{all K tests pass} (0.0 when K = 0)."""
    return 1.0 if report.outcomes and all(o == "passed" for o in report.outcomes) else 0.0


def progressive_reward(report) -> float:
    """r_t = (1/K) * sum_k 1{u_k passes}: the paper's fine-grained reward (0.0 when K = 0)."""
    k = len(report.outcomes)
    return sum(o == "passed" for o in report.outcomes) / k if k else 0.0


def count_reward(report) -> float:
    """r_t = sum_k 1{u_k passes}: the released code's progressive reward (no 1/K)."""
    return float(sum(o == "passed" for o in report.outcomes))


REWARDS: dict[str, Callable] = {"binary": binary_reward, "progressive": progressive_reward, "count": count_reward}


def accumulated_reward(turn_rewards: Sequence[float], gamma: float) -> float:
    """R = gamma^(T-1) * r_1 + sum_{t=2..T} gamma^(T-t) * (r_t - r_{t-1}), T = len(turn_rewards).

    Raises ValueError for T = 0, a non-finite reward, or gamma outside [0, 1]."""
    r = [float(x) for x in turn_rewards]
    if not r:
        raise ValueError("accumulated_reward: turn_rewards is empty (need T >= 1 turns)")
    if not all(math.isfinite(x) for x in r):
        raise ValueError(f"accumulated_reward: turn_rewards must be finite, got {r}")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"accumulated_reward: gamma must be in [0, 1], got {gamma}")
    T = len(r)
    return gamma ** (T - 1) * r[0] + sum(gamma ** (T - t) * (r[t - 1] - r[t - 2]) for t in range(2, T + 1))
