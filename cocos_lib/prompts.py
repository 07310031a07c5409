"""The prompts of training and evaluation (the released `make_prompt`, byte for byte) and code extraction.

One builder for every completion-format prompt, training and evaluation alike (the release's trainer
and its test.py call the same `make_prompt`; `release.prompt` calls `build_prompt` too):

  HEADER(task) = "You are an expert Python programmer, and here is your task: {text} Your code should pass
                  these tests:\n\n{tests}\n\n[BEGIN]\n"   ({tests}: the test list joined by "\n", stripped)
  Turn 1:    [few-shot block] + HEADER
  Turn t>=2: HEADER + y_{t-1} (the most recent attempt's code) + "\n[DONE]" + "\n\n" + CORRECTION_INSTRUCTION
             + "\n\n" + "[CORRECT]\n" (after the SFT warm-start, "Boost") or "[BEGIN]\n" (few-shot start)
  Few-shot:  HEADER(solved task) + "{code}\n[DONE]\n\n" per task, the whole block left-stripped
  HumanEval tasks (source "humaneval"): y_{t-1} is right-stripped first (the release's make_prompt_humaneval).
No execution feedback is ever shown. The task's {text} is what the task set holds: "humaneval-release" holds
the release's "Write a python function {entry_point}." (task_sets.py), "humaneval" the signature and docstring.

Extraction (EXTRACTIONS): "release" is the release's `code_process` (text up to the first [DONE], else
[CORRECT]...[DONE], else [BEGIN]...[DONE]; fences and markers removed; a text with none of these is kept as
it is), stripped before and after as its trainer does; "lenient" (`extract_code`) also reads a fenced block,
skips prose around the code and trims chatter.

Two prompt formats (PROMPT_FORMATS): "completion" is the above (base models, the paper);
"chat" renders the same state as `chat_messages` with the tokenizer's chat template (instruct
models) and pre-fills the assistant turn with CHAT_PREFILL = "```python\n", so the answer is
the code itself and ends at the closing fence: the stop string is CHAT_STOP = "```" (an instruct
model's trailing prose is never generated) and `extract_answer` puts the prefill back before
extracting; under "release" extraction the chat format's end of answer (the closing fence) plays [DONE]'s part.
"""
from __future__ import annotations

import ast
import json
import os
import re
from typing import Sequence

from cocos_lib.tasks import Task, load_mbpp

BEGIN, DONE, CORRECT = "[BEGIN]", "[DONE]", "[CORRECT]"
MARKERS = (BEGIN, DONE, CORRECT)  # the one list of the format's markers
CORRECTION_INSTRUCTION = (
    "There might be an error in the code above because of lack of understanding of the question. "
    "Please correct the error, if any, and rewrite the solution. Only output the final correct Python program!"
)
ENDINGS = {"correct": f"\n\n{CORRECT}\n", "begin": f"\n\n{BEGIN}\n"}
CHAT_SYSTEM = "You are an expert Python programmer. Reply with the complete Python program only, in one ```python code block."
PROMPT_FORMATS = ("completion", "chat")
EXTRACTIONS = ("lenient", "release")  # extract_code | release_extract (the released code_process)
CHAT_PREFILL = "```python\n"
CHAT_STOP = "```"
FEWSHOT_FILE = os.path.join(os.path.dirname(__file__), "assets", "fewshot.json")


def task_statement(task: Task) -> str:
    """The task and its tests u_1..u_K, one per line (stripped): the header without its "\n\n[BEGIN]\n"
    (the chat format's user message)."""
    tests = "\n".join(task.tests).strip()
    return f"You are an expert Python programmer, and here is your task: {task.text} Your code should pass these tests:\n\n{tests}"


def task_header(task: Task) -> str:
    """HEADER: the task statement, a blank line, then "[BEGIN]\n" (the released `make_prompt`)."""
    return f"{task_statement(task)}\n\n{BEGIN}\n"


def turn1_prompt(task: Task, fewshot: str = "") -> str:
    """s_1: optional few-shot block + HEADER."""
    return f"{fewshot}{task_header(task)}"


def correction_prompt(task: Task, previous_code: str, ending: str = "correct") -> str:
    """s_t for t >= 2: HEADER, the previous attempt y_{t-1} (right-stripped for HumanEval tasks), "\n[DONE]",
    the instruction block, then the ending."""
    if ending not in ENDINGS:
        raise ValueError(f"prompts: field 'ending': unknown ending {ending!r} (expected one of {', '.join(ENDINGS)})")
    code = previous_code.rstrip() if task.source == "humaneval" else previous_code
    return f"{task_header(task)}{code}\n{DONE}\n\n{CORRECTION_INSTRUCTION}{ENDINGS[ending]}"


def build_prompt(task: Task, previous_codes: Sequence[str], fewshot: str = "", ending: str = "correct") -> str:
    """Prompt of turn t = len(previous_codes) + 1 (only the most recent attempt is shown)."""
    if not previous_codes:
        return turn1_prompt(task, fewshot)
    return correction_prompt(task, previous_codes[-1], ending)


def default_fewshot_tasks() -> list[Task]:
    """Three solved tasks written for this repo (not MBPP text): the offline few-shot default."""
    with open(FEWSHOT_FILE, encoding="utf-8") as f:
        rows = json.load(f)
    return [Task(r["task_id"], r["text"], tuple(r["tests"]), entry_point=r["entry_point"],
                 reference=r["code"], source="cocos-fewshot") for r in rows]


def fewshot_block(tasks: Sequence[Task] | None = None, n: int = 3) -> str:
    """The first `n` solved tasks as "{HEADER}{code}\\n[DONE]\\n\\n" each, the block left-stripped (make_fewshot).
    Pass MBPP prompt-split tasks (the usual 3-shot is task_ids 2, 3, 4:
    `load_mbpp("prompt")[1:4]`); None uses the shipped offline default."""
    pool = list(tasks) if tasks is not None else default_fewshot_tasks()
    if not 0 <= n <= len(pool):
        raise ValueError(f"prompts: field 'n': {n} few-shot examples requested, {len(pool)} available")
    out = []
    for t in pool[:n]:
        if t.reference is None:
            raise ValueError(f"prompts: field 'reference': few-shot task {t.task_id} has no solution")
        out.append(f"{task_header(t)}{t.reference}\n{DONE}\n\n")
    return "".join(out).lstrip()


def mbpp_fewshot_block(n: int = 3, path=None) -> str:
    """The usual MBPP n-shot block: prompt-split task_ids 2, 3, 4 (hub when `path` is None)."""
    return fewshot_block(load_mbpp("prompt", path=path)[1:1 + n], n)


def fewshot_for(task_set: str, n: int, path=None) -> str:
    """The turn-1 few-shot block for a base model evaluated or trained on `task_set`.

    n == 0: "" (no block). mbpp-* sets: the paper's block, n solved MBPP prompt-split tasks
    (task_ids 2.., `mbpp_fewshot_block`; `path` is a local MBPP file or folder, the hub when
    None). Any other set (humaneval, toy-*): the shipped offline default (`fewshot_block`),
    as no prompt split exists for them and it keeps those runs offline.
    """
    if n == 0:
        return ""
    if task_set.startswith("mbpp"):
        return mbpp_fewshot_block(n, path=path)
    return fewshot_block(n=n)


def chat_messages(task: Task, previous_codes: Sequence[str] = ()) -> list[dict]:
    """The same state s_t as chat messages for instruct models (`tokenizer.apply_chat_template`):
    system, user = header; for t >= 2 the most recent attempt as the assistant's answer and the
    correction instruction as the next user message (same information as `build_prompt`)."""
    msgs = [{"role": "system", "content": CHAT_SYSTEM}, {"role": "user", "content": task_statement(task)}]
    if previous_codes:
        msgs.append({"role": "assistant", "content": f"```python\n{previous_codes[-1]}\n```"})
        msgs.append({"role": "user", "content": CORRECTION_INSTRUCTION})
    return msgs


def chat_prompt(tokenizer, messages: Sequence[dict], prefill: str = CHAT_PREFILL) -> str:
    """The chat template's text for `messages` up to the assistant's turn, then `prefill`."""
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    return text + prefill


def render_prompt(tokenizer, task: Task, previous_codes: Sequence[str], prompt_format: str = "completion",
                  fewshot: str = "", ending: str = "correct") -> str:
    """Prompt text of turn len(previous_codes) + 1: `build_prompt` ("completion") or the chat
    template of `chat_messages` pre-filled with CHAT_PREFILL ("chat"; no few-shot, no ending)."""
    if prompt_format == "chat":
        return chat_prompt(tokenizer, chat_messages(task, previous_codes))
    if prompt_format != "completion":
        raise ValueError(f"prompts: field 'prompt_format': unknown format {prompt_format!r} "
                         f"(expected one of {', '.join(PROMPT_FORMATS)})")
    return build_prompt(task, previous_codes, fewshot, ending)


def answer_stop(prompt_format: str, stop: str | None) -> str | None:
    """The stop string of an answer: "[DONE]" means "end of the answer", i.e. CHAT_STOP in the chat
    format; any other stop (or None: no stop) is kept."""
    return CHAT_STOP if prompt_format == "chat" and stop == DONE else stop


def extract_answer(text: str | None, prompt_format: str = "completion", extraction: str = "lenient") -> str:
    """The program in a completion of `render_prompt` by the named extraction (EXTRACTIONS). Chat completions
    get CHAT_PREFILL back first ("lenient"), or are cut at their closing fence, the format's [DONE] ("release")."""
    if extraction not in EXTRACTIONS:
        raise ValueError(f"prompts: field 'extraction': unknown extraction {extraction!r} "
                         f"(expected one of {', '.join(EXTRACTIONS)})")
    if extraction == "release":
        text = text or ""
        if prompt_format == "chat" and CHAT_STOP in text:
            text = text[:text.index(CHAT_STOP)] + DONE
        return release_extract(text)
    if prompt_format == "chat":
        return extract_code(CHAT_PREFILL + (text or ""))
    return extract_code(text)


_RELEASE_PATTERNS = (re.compile(r"^(.*?)\[DONE\]", re.S), re.compile(r"\[CORRECT\].*?\[DONE\]", re.S),
                     re.compile(r"\[BEGIN\].*?\[DONE\]", re.S))


def code_process(text: str) -> str:
    """The release's extraction of one completion, exactly: the first match of "^...[DONE]", else
    "[CORRECT]...[DONE]", else "[BEGIN]...[DONE]", stripped, then "```python\\n", "\\n```" and the three
    markers removed; a text without a match is returned as it is (markers and fences included)."""
    match = next((m for m in (p.search(text) for p in _RELEASE_PATTERNS) if m), None)
    if match is None:
        return text
    code = match.group(0).strip()
    for junk in ("```python\n", "\n```", BEGIN, DONE, CORRECT):
        code = code.replace(junk, "")
    return code


def release_extract(text: str | None) -> str:
    """Extraction "release": `code_process` of the stripped completion, stripped (the released trainer's
    `code_process(r.strip()).strip()`, also its MBPP reward and test.py's)."""
    return code_process((text or "").strip()).strip()


_FENCE = re.compile(r"```[ \t]*[\w+-]*[ \t]*\n(.*?)(?:```|\Z)", re.S)
_CODE_START = re.compile(r"(def |class |import |from |@|#|async def |if |for |while |try:|with |print\(|"
                         r"[A-Za-z_][\w.]*(\[.*\])?\s*(=|\(|\+=|-=))")
_MARKER = re.compile(r"\[(BEGIN|CORRECT)\]")
_PROSE = re.compile(r"[A-Za-z][^\n]*\s[^\n]*")


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
        return True
    except (SyntaxError, ValueError):
        return False


def _trim_chatter(code: str) -> str:
    """Drop prose lines before the first code-looking line and from the first unindented
    prose line on, only when the text does not parse as is and the rest then parses
    (text that parses, or that parses no better without them, is returned unchanged)."""
    if _parses(code):
        return code
    lines = code.split("\n")
    start = next((i for i, ln in enumerate(lines) if _CODE_START.match(ln)), 0)
    for end in range(start + 1, len(lines) + 1):
        rest = lines[end:] if end < len(lines) else []
        if rest and not (_PROSE.match(rest[0]) and not _CODE_START.match(rest[0])):
            continue
        if _parses("\n".join(lines[start:end])):
            return "\n".join(lines[start:end])
    return "\n".join(lines[start:]) if _parses("\n".join(lines[start:])) else code


def extract_code(text: str | None) -> str:
    """The program in a completion: text up to the first [DONE]; the first ``` fenced block
    if there is one; else what follows the first [BEGIN]/[CORRECT]; stray markers removed,
    chatter around the code dropped, CRLF normalised. "" for empty output."""
    if not text:
        return ""
    text = text.replace("\r\n", "\n").replace("\r", "\n").split(DONE)[0]
    fence = _FENCE.search(text)
    if fence:
        text = fence.group(1)
    else:
        m = _MARKER.search(text)
        if m and _MARKER.sub("", text[m.end():]).strip():
            text = text[m.end():]
    text = _MARKER.sub("", text)
    text = "\n".join(ln.rstrip() for ln in text.split("\n")).strip("\n")
    if not text.strip():
        return ""
    return _trim_chatter(text)
