"""What a rollout produces and an update consumes: `Turn` and `Trajectory` (a leaf of the core).

A trajectory is the T turns of sample s (0..k-1) of task g (a *group*): per turn t the prompt x_t,
the completion y_t (token ids), its text and extracted code, the test report and the reward r_t.
Its return R = accumulated_reward([r_1..r_T], gamma) is computed in one place, `rewards`.
`rollout` builds them; `rl`, `logprobs`, `train`, `learning_signal` and `evaluate` read them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cocos_lib.executor import TestReport
from cocos_lib.rewards import accumulated_reward
from cocos_lib.tasks import Task


@dataclass
class Turn:
    """One turn t: prompt x_t, completion y_t (every completion token is the model's, so the
    completion mask is all ones and kept implicit by the lengths), code, report, reward r_t."""
    prompt_ids: list[int]      # x_t, token ids (left-truncated, a leading BOS kept)
    completion_ids: list[int]  # y_t, token ids as generated (a final EOS included)
    text: str                  # y_t decoded
    code: str                  # the code extracted from `text` (prompts.extract_answer)
    report: TestReport         # the executor's verdict on `code`, one outcome per unit test
    reward: float              # r_t = REWARDS[reward](report)

    @property
    def completion_mask(self) -> list[int]:
        return [1] * len(self.completion_ids)


@dataclass
class Trajectory:
    """The T turns of sample `sample` (0..k-1) of task `group` (its index in the task list)."""
    task: Task
    turns: list[Turn] = field(default_factory=list)
    group: int = 0   # index of the task in the batch: the RLOO group
    sample: int = 0  # 0..k-1 inside the group

    @property
    def rewards(self) -> list[float]:
        return [t.reward for t in self.turns]

    def accumulated(self, gamma: float) -> float:
        """R = gamma^(T-1) r_1 + sum_{t>=2} gamma^(T-t) (r_t - r_{t-1}): rewards.accumulated_reward."""
        return accumulated_reward(self.rewards, gamma)
