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

Chat format (instruct models, ``cfg.prompt_format == "chat"``): the same two steps as messages.
Critique: system, user = header, assistant = y_{t-1} in a ```python block, user =
CRITIQUE_INSTRUCTION; the model's own feedback ends at its end-of-turn token (no stop string,
no prefill). Rewrite: those messages, assistant = f_t, user = REWRITE_INSTRUCTION, then the
assistant turn pre-filled with "```python\n" and stopped at "```", as every chat answer.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from cocos_lib import prompts
from cocos_lib import rollout as R

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


def chat_critique_messages(task, previous_code: str) -> list[dict]:
    """Critique step as chat messages: the correction dialogue with CRITIQUE_INSTRUCTION as the ask."""
    return prompts.chat_messages(task, [previous_code])[:-1] + [{"role": "user", "content": CRITIQUE_INSTRUCTION}]


def chat_rewrite_messages(task, previous_code: str, feedback: str) -> list[dict]:
    """Rewrite step as chat messages: the critique dialogue, the feedback, then REWRITE_INSTRUCTION."""
    return chat_critique_messages(task, previous_code) + [{"role": "assistant", "content": feedback},
                                                          {"role": "user", "content": REWRITE_INSTRUCTION}]


def _step_prompts(policy, cfg, task, previous_code: str, feedback: str | None) -> str:
    """Critique prompt (feedback None) or rewrite prompt, in cfg.prompt_format."""
    if cfg.prompt_format != "chat":
        if feedback is None:
            return critique_prompt(task, previous_code)
        return rewrite_prompt(task, previous_code, feedback, cfg.ending)
    if feedback is None:
        return prompts.chat_prompt(policy.tokenizer, chat_critique_messages(task, previous_code), prefill="")
    return prompts.chat_prompt(policy.tokenizer, chat_rewrite_messages(task, previous_code, feedback))


def refine_step(policy, tasks: Sequence, previous_codes: Sequence[str], cfg, executor, seed: int, t: int = 2):
    """One Self-Refine turn t >= 2 for a batch: critique each y_{t-1}, then rewrite with that feedback.
    Returns (turns: list[rollout.Turn] of the rewrites, feedback: list[(f_t, critique tokens)])."""
    fb_sampling = replace(cfg.sampling, stop=None) if cfg.prompt_format == "chat" else cfg.sampling
    fb_prompts = [_step_prompts(policy, cfg, task, c, None) for task, c in zip(tasks, previous_codes)]
    _, fb_ids, fb_raw = R.generate_texts(policy, fb_prompts, cfg, fb_sampling, R.turn_seed(seed, 100 + t))
    fb_texts = [extract_feedback(x) for x in fb_raw]
    rw_prompts = [_step_prompts(policy, cfg, task, c, f) for task, c, f in zip(tasks, previous_codes, fb_texts)]
    turns = R.run_turn(policy, list(tasks), rw_prompts, cfg, executor, R.turn_seed(seed, t))
    return turns, [(f, len(ids)) for f, ids in zip(fb_texts, fb_ids)]


def self_refine(policy, tasks: Sequence, cfg, executor, seed: int = 0):
    """Self-Refine trajectories: turn 1 from ``rollout`` (turns=1), then ``refine_step`` per turn.

    Returns ``(trajectories, feedback)`` where trajectories are ``rollout.Trajectory`` objects
    (turn t holds the rewrite prompt / completion) ordered like ``rollout``'s, and
    ``feedback[i][t - 2]`` is (feedback text f_t, number of critique tokens) for trajectory i.
    Both steps go through ``rollout``'s own pipeline (``generate_texts`` / ``run_turn``).
    """
    trajs = R.rollout(policy, tasks, replace(cfg, turns=1), executor, seed=seed)
    feedback: list[list[tuple[str, int]]] = [[] for _ in trajs]
    for t in range(2, cfg.turns + 1):
        prev = [tr.turns[-1].code for tr in trajs]
        turns, fb = refine_step(policy, [tr.task for tr in trajs], prev, cfg, executor, seed, t)
        for i, tr in enumerate(trajs):
            tr.turns.append(turns[i])
            feedback[i].append(fb[i])
    return trajs, feedback
