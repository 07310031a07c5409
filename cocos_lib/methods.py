"""How a method produces turns: one signature, one table (`TURNS`), so that callers dispatch instead of branching.

    produce(policy, tasks, cfg: RolloutConfig, executor, seed) -> (trajectories, feedback)

trajectories: one `Trajectory` per task and sample, ordered by (group, sample) as `rollout.rollout` returns them;
feedback: None, or per trajectory the (critique text, critique tokens) of each turn t >= 2 (Self-Refine).
    "cocos"        the correction instruction (`rollout.rollout`; simple prompting for an untrained model)
    "self-refine"  critique, then rewrite with that feedback (`evaluation.baselines.self_refine`)
    "release"      the authors' evaluation pipeline (`release.pipeline.released_rollout`: `rollout.rollout` with their
                   text steps, `release_format`: prompts, truncation, decoding, extraction; greedy, one sample;
                   cfg gives turns, sampling, few-shot block and reward)
"""
from __future__ import annotations

from typing import Callable, Sequence

from cocos_lib.evaluation.baselines import self_refine
from cocos_lib.executor import Executor
from cocos_lib.release import pipeline
from cocos_lib.rollout import RolloutConfig, rollout
from cocos_lib.tasks import Task
from cocos_lib.trajectory import Trajectory

Feedback = list[list[tuple[str, int]]] | None


def cocos_turns(policy, tasks: Sequence[Task], cfg: RolloutConfig, executor: Executor,
                seed: int) -> tuple[list[Trajectory], Feedback]:
    return rollout(policy, tasks, cfg, executor, seed=seed), None


def self_refine_turns(policy, tasks: Sequence[Task], cfg: RolloutConfig, executor: Executor,
                      seed: int) -> tuple[list[Trajectory], Feedback]:
    return self_refine(policy, tasks, cfg, executor, seed=seed)


def release_turns(policy, tasks: Sequence[Task], cfg: RolloutConfig, executor: Executor,
                  seed: int) -> tuple[list[Trajectory], Feedback]:
    return pipeline.released_rollout(policy, tasks, cfg.turns, cfg.sampling, executor, cfg.fewshot, seed=seed,
                                     reward=cfg.reward, timeout_s=cfg.exec_timeout_s), None


TURNS: dict[str, Callable[..., tuple[list[Trajectory], Feedback]]] = {
    "cocos": cocos_turns, "self-refine": self_refine_turns, "release": release_turns}


def producer(method: str, prompt_format: str = "completion") -> Callable[..., tuple[list[Trajectory], Feedback]]:
    """The TURNS entry of `method` ("cocos" | "self-refine"); the release format takes "release" (its text steps)."""
    return TURNS["release" if prompt_format == "release" else method]
