"""The authors' released evaluation format (their `test.py` and `cocos/prompts.py`), exactly, and
the released checkpoints it belongs to (docs/paper.md §8 "The released evaluation, exactly").

Prompts. {tests} is the task's test list joined by "\\n", stripped; HEADER(text) =
    "You are an expert Python programmer, and here is your task: {text} Your code should pass these
     tests:\\n\\n{tests}\\n\\n[BEGIN]\\n"
  MBPP, turn 1:      [few-shot block] + HEADER(task text)
  MBPP, turn t >= 2: HEADER + "{last code}\\n[DONE]" + "\\n\\n{instruction}\\n\\n"
                     + "[BEGIN]\\n" when a few-shot block is used (base models), else "[CORRECT]\\n"
  HumanEval:         HEADER("Write a python function {entry_point}.") (no docstring, never a few-shot
                     block); turn t >= 2 appends "{last code, right-stripped}\\n[DONE]", the
                     instruction block and "[CORRECT]\\n".
  Few-shot block:    HEADER(text) + "{code}\\n[DONE]\\n\\n" per solved task, the whole block left-stripped.
Extraction (`extract`): the text up to and including the first [DONE] (else [CORRECT]...[DONE], else
  [BEGIN]...[DONE]), stripped, then "```python\\n", "\\n```", [BEGIN], [DONE], [CORRECT] removed; a
  text without a match is kept as it is. MBPP strips the completion before and the code after;
  HumanEval does neither (the release's two reward functions differ so).
Models. The release's pad token per family, matched as a substring of the model name in this
  order: llama, qwen, deepseek. The RL checkpoints started from an SFT warm-start ("Boost") and are
  evaluated without few-shot; their base models with the MBPP prompt-split few-shot block.

The text itself comes from `cocos_lib.prompts` (one builder: `build_prompt`, `code_process`), which is what
the training prompts use too; this module picks the release's choices (statement, ending, extraction).
`release_run.py` loads these models and runs the turns; this module is pure text.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from cocos_lib import prompts
from cocos_lib.prompts import CORRECTION_INSTRUCTION
from cocos_lib.tasks import Task, release_statement

INSTRUCTION_BLOCK = f"\n\n{CORRECTION_INSTRUCTION}\n\n"
MAX_PROMPT_TOKENS = 8192          # the release truncates prompts to their first 8,192 tokens
MAX_NEW_TOKENS = 512
BATCH_SIZE = 8
FEWSHOT_N = 3                     # MBPP prompt split, task_ids 2, 3, 4 (prompts.mbpp_fewshot_block's choice)
PAD_TOKENS = {                    # family -> (pad token, its id in the family's tokenizer)
    "llama": ("<|finetune_right_pad_id|>", 128004),
    "qwen": ("<|endoftext|>", 151643),
    "deepseek": ("<｜end▁of▁sentence｜>", 32014),
}


@dataclass(frozen=True)
class Pair:
    """A released RL checkpoint and the base model it was trained from."""
    label: str          # short name, e.g. "Qwen2.5-1.5B"
    checkpoint: str     # hub name of the CoCoS checkpoint (evaluated without few-shot, [CORRECT])
    base: str           # hub name of the base model (evaluated few-shot on MBPP, [BEGIN])
    gated: bool = False  # the base model needs its licence accepted on the hub and a token


PAIRS = (
    Pair("Qwen2.5-1.5B", "Jay-Cho/CoCoS-Qwen2.5-1.5B", "Qwen/Qwen2.5-1.5B"),
    Pair("Llama-3.2-1B", "Jay-Cho/CoCoS-Llama-3.2-1B", "meta-llama/Llama-3.2-1B", gated=True),
    Pair("deepseek-coder-1.3b", "Jay-Cho/CoCoS-deepseek-coder-1.3b-base", "deepseek-ai/deepseek-coder-1.3b-base"),
)
PAIR_BY_LABEL = {p.label: p for p in PAIRS}


class ReleaseError(ValueError):
    """An unknown released model or pair, one line."""


def pair(label: str) -> Pair:
    if label not in PAIR_BY_LABEL:
        raise ReleaseError(f"released pair {label!r}: expected one of {', '.join(PAIR_BY_LABEL)}")
    return PAIR_BY_LABEL[label]


def is_checkpoint(name: str) -> bool:
    return any(name == p.checkpoint for p in PAIRS)


def is_base(name: str) -> bool:
    return any(name == p.base for p in PAIRS)


def gated_note(name: str) -> str:
    """What a user must do before a gated base model downloads ("" when it is not gated)."""
    if not any(p.gated and p.base == name for p in PAIRS):
        return ""
    return (f"{name} is gated: accept its licence at https://huggingface.co/{name} with your account, then give this "
            "runtime a token (Colab: a secret named HF_TOKEN; elsewhere `huggingface-cli login` or HF_TOKEN)")


def family(name: str) -> str | None:
    """The release's model family of a name (substring match, case-insensitive), or None."""
    low = name.lower()
    return next((key for key in PAD_TOKENS if key in low), None)


def header(task: Task) -> str:
    """HEADER of the task: MBPP text, or the HumanEval entry-point sentence (no docstring)."""
    return prompts.task_header(release_statement(task))


def fewshot_block(tasks: Sequence[Task]) -> str:
    """The release's few-shot block of solved tasks (their `reference` code), left-stripped."""
    missing = [t.task_id for t in tasks if t.reference is None]
    if missing:
        raise ReleaseError(f"few-shot task {missing[0]} has no reference solution")
    return prompts.fewshot_block(tasks, n=len(tasks))


def prompt(task: Task, previous_codes: Sequence[str] = (), fewshot: str = "") -> str:
    """The prompt of turn t = len(previous_codes) + 1 (only the last attempt is shown): prompts.build_prompt
    on the release's statement, the ending [BEGIN] after a few-shot block, else [CORRECT]; HumanEval never
    takes a few-shot block."""
    fewshot = "" if task.source == "humaneval" else fewshot
    return prompts.build_prompt(release_statement(task), previous_codes, fewshot, "begin" if fewshot else "correct")


def extract(text: str, task: Task) -> str:
    """The code the release keeps from a decoded completion of `task`: MBPP strips the completion before and
    the code after (prompts.release_extract), HumanEval does neither (prompts.code_process)."""
    if task.source == "humaneval":
        return prompts.code_process(text)
    return prompts.release_extract(text)
