"""Prompting baselines with the same model and prompts: Self-Refine-style critique, then rewrite.

"Simple prompting" needs nothing here: it is ``rollout`` with the correction instruction
(``prompts.correction_prompt``). Self-Refine (Madaan et al. 2023) splits each revision
turn t >= 2 into two generations by the same model, still without execution feedback:

1. critique  s^fb_t = header + y_{t-1} + "\\n[DONE]\\n\\n" + CRITIQUE_INSTRUCTION + "\\n\\n[FEEDBACK]\\n"
             -> the model writes feedback f_t and ends it with "[DONE]";
2. rewrite   s_t    = s^fb_t + f_t + "\\n[DONE]\\n\\n" + REWRITE_INSTRUCTION + ending
             (ending "\\n\\n[CORRECT]\\n" or "\\n\\n[BEGIN]\\n", as the correction prompt)
             -> the model writes y_t and "[DONE]".

Both generations use the same SamplingConfig (so the same "[DONE]" stop string) and turn 1
is the ordinary turn-1 prompt. The format mirrors the correction prompt so a base model
sees one consistent MBPP-style document; the exact Self-Refine prompts of the paper are
not published.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from cocos_lib import prompts

FEEDBACK = "[FEEDBACK]"
CRITIQUE_INSTRUCTION = (
    "Review the code above. Is there an error in it because of lack of understanding of the question? "
    "Give short feedback on what is wrong and how to fix it, or say that it is correct. Do not write code."
)
REWRITE_INSTRUCTION = (
    "Using the feedback above, correct the error, if any, and rewrite the solution. "
    "Only output the final correct Python program!"
)


def critique_prompt(task, previous_code: str) -> str:
    """s^fb_t: header, the previous attempt y_{t-1}, the critique instruction, "[FEEDBACK]"."""
    return (f"{prompts.task_header(task)}{previous_code}\n{prompts.DONE}\n\n"
            f"{CRITIQUE_INSTRUCTION}\n\n{FEEDBACK}\n")


def extract_feedback(text: str) -> str:
    """The feedback f_t: generated text up to the first "[DONE]", markers removed, stripped."""
    text = (text or "").split(prompts.DONE)[0]
    for marker in (FEEDBACK, prompts.BEGIN, prompts.CORRECT):
        text = text.replace(marker, "")
    return text.strip()


def rewrite_prompt(task, previous_code: str, feedback: str, ending: str = "correct") -> str:
    """s_t: the critique prompt, the feedback f_t, then the rewrite instruction and ending."""
    if ending not in prompts.ENDINGS:
        raise ValueError(f"baselines: field 'ending': unknown ending {ending!r} "
                         f"(expected one of {', '.join(prompts.ENDINGS)})")
    return (f"{critique_prompt(task, previous_code)}{feedback}\n{prompts.DONE}\n\n"
            f"{REWRITE_INSTRUCTION}{prompts.ENDINGS[ending]}")


def self_refine(policy, tasks: Sequence, cfg, executor, seed: int = 0):
    """Self-Refine trajectories: turn 1 from ``rollout`` (turns=1), then critique + rewrite.

    Returns ``(trajectories, feedback)`` where trajectories are ``rollout.Trajectory`` objects
    (turn t holds the rewrite prompt / completion) ordered like ``rollout``'s, and
    ``feedback[i][t - 2]`` is (feedback text f_t, number of critique tokens) for trajectory i.
    Prompts are encoded, left-truncated, decoded and executed exactly as in ``rollout``.
    """
    from cocos_lib import rollout as R
    from cocos_lib.generation import generate
    from cocos_lib.rewards import REWARDS

    trajs = R.rollout(policy, tasks, replace(cfg, turns=1), executor, seed=seed)
    feedback: list[list[tuple[str, int]]] = [[] for _ in trajs]
    reward_fn, budget = REWARDS[cfg.reward], R.prompt_budget(policy, cfg)
    for t in range(2, cfg.turns + 1):
        prev = [tr.turns[-1].code for tr in trajs]
        fb_prompts = R.encode_prompts(policy.tokenizer, [critique_prompt(tr.task, c) for tr, c in zip(trajs, prev)],
                                      budget)
        fb_ids = generate(policy, fb_prompts, cfg.sampling, seed=R.turn_seed(seed, 100 + t), backend=cfg.backend)
        fb_texts = [extract_feedback(R.decode_completion(policy, ids)) for ids in fb_ids]
        rw_prompts = R.encode_prompts(policy.tokenizer, [rewrite_prompt(tr.task, c, f, cfg.ending)
                                                         for tr, c, f in zip(trajs, prev, fb_texts)], budget)
        rw_ids = generate(policy, rw_prompts, cfg.sampling, seed=R.turn_seed(seed, t), backend=cfg.backend)
        texts = [R.decode_completion(policy, ids) for ids in rw_ids]
        codes = [prompts.extract_code(x) for x in texts]
        reports = R.execute(executor, [tr.task for tr in trajs], codes, cfg.timeout_s)
        for i, tr in enumerate(trajs):
            tr.turns.append(R.Turn(prompt_ids=rw_prompts[i], completion_ids=rw_ids[i], text=texts[i],
                                   code=codes[i], report=reports[i], reward=float(reward_fn(reports[i]))))
            feedback[i].append((fb_texts[i], len(fb_ids[i])))
    return trajs, feedback
