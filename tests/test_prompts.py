"""Prompt formats and extraction. The golden strings are written out by hand from the released
`cocos/prompts.py` (`make_prompt`, `make_fewshot`, `make_prompt_humaneval`, `code_process`): training and
evaluation prompts must equal them byte for byte in all four cases (turn 1, turn 2 with [CORRECT],
few-shot turn 1, few-shot turn 2 with [BEGIN]), for MBPP and HumanEval."""
import pytest

from cocos_lib.prompts import (BEGIN, CORRECT, CORRECTION_INSTRUCTION, DONE, build_prompt, chat_messages, code_process,
                               correction_prompt, default_fewshot_tasks, extract_answer, extract_code, fewshot_block,
                               mbpp_fewshot_block, release_extract, task_header, task_statement, turn1_prompt)
from cocos_lib.tasks import Task

TASK = Task("MBPP/2", "Write a function to find the shared elements from the given two lists.",
            ("assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)",
             "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)"),
            entry_point="similar_elements", reference="def similar_elements(a, b):\n  return tuple(set(a) & set(b))")

STATEMENT = ("You are an expert Python programmer, and here is your task: Write a function to find the shared elements "
             "from the given two lists. Your code should pass these tests:\n\n"
             "assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)\n"
             "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)")
HEADER = STATEMENT + "\n\n[BEGIN]\n"   # the release's header: a blank line, then [BEGIN]
INSTRUCTION = ("There might be an error in the code above because of lack of understanding of the question. "
               "Please correct the error, if any, and rewrite the solution. Only output the final correct Python program!")
CODE1, CODE2 = "def similar_elements(a, b):\n    return a", "def similar_elements(a, b):\n    return b"


def test_markers_and_instruction_verbatim():
    assert (BEGIN, DONE, CORRECT) == ("[BEGIN]", "[DONE]", "[CORRECT]")
    assert CORRECTION_INSTRUCTION == INSTRUCTION


INSTRUCTION_BLOCK = "\n\n" + INSTRUCTION + "\n\n"
SHOT = Task("MBPP/3", "Write a python function to identify non-prime numbers.",
            ("assert is_not_prime(2) == False", "assert is_not_prime(10) == True"),
            reference="def is_not_prime(n):\n    return n < 2", source="mbpp")
SHOT_TEXT = ("You are an expert Python programmer, and here is your task: Write a python function to identify "
             "non-prime numbers. Your code should pass these tests:\n\nassert is_not_prime(2) == False\n"
             "assert is_not_prime(10) == True\n\n[BEGIN]\ndef is_not_prime(n):\n    return n < 2\n[DONE]\n\n")
HE = Task("HumanEval/0", "Write a python function add.", ("assert add(1, 2) == 3", "assert add(0, 0) == 0"),
          setup="from typing import List", entry_point="add", source="humaneval")
HE_HEADER = ("You are an expert Python programmer, and here is your task: Write a python function add. "
             "Your code should pass these tests:\n\nassert add(1, 2) == 3\nassert add(0, 0) == 0\n\n[BEGIN]\n")


def test_the_four_released_cases_mbpp():
    """make_prompt(batch, 1 | 2, responses, fewshot=None | block), by hand."""
    block = fewshot_block([SHOT], n=1)
    assert block == SHOT_TEXT
    assert build_prompt(TASK, []) == HEADER                                                   # turn 1
    assert build_prompt(TASK, [CODE1]) == HEADER + CODE1 + "\n[DONE]" + INSTRUCTION_BLOCK + "[CORRECT]\n"  # turn 2
    assert build_prompt(TASK, [], block) == SHOT_TEXT + HEADER                                # few-shot turn 1
    assert build_prompt(TASK, [CODE1], block, "begin") == (                                   # few-shot turn 2
        HEADER + CODE1 + "\n[DONE]" + INSTRUCTION_BLOCK + "[BEGIN]\n")
    # turn 3 shows only the most recent attempt, and never the few-shot block
    assert build_prompt(TASK, [CODE1, CODE2], block, "begin") == (
        HEADER + CODE2 + "\n[DONE]" + INSTRUCTION_BLOCK + "[BEGIN]\n")
    assert "\n\n[BEGIN]\n" + CODE1 in build_prompt(TASK, [CODE1])   # the previous code follows [BEGIN]


def test_the_released_cases_humaneval():
    """make_prompt_humaneval: the entry-point sentence, no few-shot, the last code right-stripped."""
    assert build_prompt(HE, []) == HE_HEADER
    last = "def add(x, y):\n    return x - y\n\n"
    assert build_prompt(HE, ["x = 1", last]) == (
        HE_HEADER + "def add(x, y):\n    return x - y" + "\n[DONE]" + INSTRUCTION_BLOCK + "[CORRECT]\n")


def test_release_prompt_is_this_builder():
    from cocos_lib.release import authors as release
    block = fewshot_block([SHOT], n=1)
    for codes in ([], [CODE1], [CODE1, CODE2]):
        assert release.prompt(TASK, codes) == build_prompt(TASK, codes)
        assert release.prompt(TASK, codes, block) == build_prompt(TASK, codes, block, "begin")
        assert release.prompt(HE, codes) == build_prompt(HE, codes)


def test_header_and_turn1():
    assert task_statement(TASK) == STATEMENT
    assert task_header(TASK) == HEADER
    assert turn1_prompt(TASK) == HEADER
    assert turn1_prompt(TASK, fewshot="FEW\n\n") == "FEW\n\n" + HEADER
    trailing = Task("X", "t.", ("assert f() == 1\n",))   # the test list is joined, then stripped
    assert task_header(trailing).endswith("assert f() == 1\n\n[BEGIN]\n")


def test_correction_prompt_both_endings():
    assert correction_prompt(TASK, CODE1) == HEADER + CODE1 + "\n[DONE]\n\n" + INSTRUCTION + "\n\n[CORRECT]\n"
    assert correction_prompt(TASK, CODE1, ending="begin") == HEADER + CODE1 + "\n[DONE]\n\n" + INSTRUCTION + "\n\n[BEGIN]\n"
    with pytest.raises(ValueError, match="field 'ending': unknown ending 'done'"):
        correction_prompt(TASK, CODE1, ending="done")


def test_fewshot_block_from_tasks_and_default():
    assert fewshot_block([TASK], n=1) == HEADER + "def similar_elements(a, b):\n  return tuple(set(a) & set(b))\n[DONE]\n\n"
    assert fewshot_block([TASK, TASK], n=0) == ""
    with pytest.raises(ValueError, match="field 'n': 4 few-shot examples requested, 3 available"):
        fewshot_block(n=4)
    with pytest.raises(ValueError, match="field 'reference': few-shot task X has no solution"):
        fewshot_block([Task("X", "t", ("assert 1",))], n=1)
    block = fewshot_block()
    assert block.startswith(
        "You are an expert Python programmer, and here is your task: Write a function to return the sum of the squares "
        "of the numbers in a list. Your code should pass these tests:\n\nassert sum_of_squares([1, 2, 3]) == 14\n"
        "assert sum_of_squares([]) == 0\nassert sum_of_squares([-2, 5]) == 29\n\n[BEGIN]\ndef sum_of_squares(nums):\n"
        "    total = 0\n    for x in nums:\n        total += x * x\n    return total\n[DONE]\n\n")
    assert block.count("\n\n[BEGIN]\n") == 3 and block.count("\n[DONE]\n\n") == 3 and block.endswith("[DONE]\n\n")
    assert fewshot_block(n=1) == block[:block.index("[DONE]\n\n") + 8]


def test_mbpp_fewshot_block_uses_prompt_split_ids_2_to_4(tmp_path):
    import json

    rows = [{"text": f"Task {i}.", "code": f"def f{i}():\r\n    return {i}", "task_id": i, "test_setup_code": "",
             "test_list": [f"assert f{i}() == {i}"], "challenge_test_list": []} for i in (1, 2, 3, 4, 5, 11)]
    (tmp_path / "mbpp.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    block = mbpp_fewshot_block(n=3, path=str(tmp_path))
    assert block == "".join(
        f"You are an expert Python programmer, and here is your task: Task {i}. Your code should pass these tests:"
        f"\n\nassert f{i}() == {i}\n\n[BEGIN]\ndef f{i}():\n    return {i}\n[DONE]\n\n" for i in (2, 3, 4))


def test_default_fewshot_solutions_pass_their_tests():
    tasks = default_fewshot_tasks()
    assert [t.entry_point for t in tasks] == ["sum_of_squares", "count_vowels", "reverse_words"]
    for t in tasks:
        assert len(t.tests) == 3
        for u in t.tests:
            ns = {}
            exec(t.reference, ns)
            exec(u, ns)


def test_chat_messages():
    sys_msg = {"role": "system", "content": "You are an expert Python programmer. Reply with the complete Python "
                                            "program only, in one ```python code block."}
    assert chat_messages(TASK, []) == [sys_msg, {"role": "user", "content": STATEMENT}]
    assert chat_messages(TASK, [CODE1, CODE2]) == [
        sys_msg, {"role": "user", "content": STATEMENT},
        {"role": "assistant", "content": "```python\n" + CODE2 + "\n```"}, {"role": "user", "content": INSTRUCTION}]


def test_chat_messages_work_with_apply_chat_template():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>")))
    tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
    text = tok.apply_chat_template(chat_messages(TASK, [CODE1]), tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|system|>\nYou are an expert Python programmer. Reply")
    assert text.endswith(f"<|assistant|>\n```python\n{CODE1}\n```\n<|user|>\n{INSTRUCTION}\n<|assistant|>\n")


F = "def f(x):\n    return x"
MESSY = [
    ("plain up to first DONE", F + "\n[DONE]\nmore junk [DONE]", F),
    ("missing DONE", F + "\n", F),
    ("empty", "", ""),
    ("None", None, ""),
    ("only whitespace", "   \n\t\n", ""),
    ("only DONE", "[DONE]", ""),
    ("CRLF", "def f(x):\r\n    return x\r\n[DONE]", F),
    ("fence + chatter after", "```python\n" + F + "\n```\nThis function returns x.", F),
    ("chatter + fence", "Sure! Here is the solution:\n```python\n" + F + "\n```", F),
    ("bare fence", "```\n" + F + "\n```", F),
    ("unclosed fence", "```python\n" + F + "\n", F),
    ("DONE inside fence", "```python\n" + F + "\n[DONE]\n```", F),
    ("first of two fences", "```py\n" + F + "\n```\nTest:\n```python\nprint(f(1))\n```", F),
    ("BEGIN marker", "[BEGIN]\n" + F + "\n[DONE]", F),
    ("CORRECT marker", "[CORRECT]\n" + F + "\n[DONE]", F),
    ("two markers", "[CORRECT]\n[BEGIN]\n" + F + "\n[DONE]", F),
    ("trailing stray marker", F + "[CORRECT]", F),
    ("chatter before marker, prompt echo after", "The code above is correct.\n[BEGIN]\nimport math\n" + F +
     "\n[DONE]\n\nThere might be an error", "import math\n" + F),
    ("prose before and after, no fence", "Here is the corrected code:\n" + F + "\nThis returns x unchanged.", F),
    ("broken code is kept as is", "def f(x):\n    return x +\n[DONE]", "def f(x):\n    return x +"),
    ("own asserts kept", F + "\n\n\nassert f(1) == 1\n[DONE]", F + "\n\n\nassert f(1) == 1"),
    ("indented first line kept", "    return x\n[DONE]", "    return x"),
    ("trailing spaces", F + "   \n\n[DONE]", F),
]


@pytest.mark.parametrize("name,text,want", MESSY, ids=[m[0] for m in MESSY])
def test_extract_code(name, text, want):
    assert extract_code(text) == want


def test_extract_code_round_trip_with_prompts():
    completion = CODE1 + "\n[DONE]"
    assert build_prompt(TASK, [extract_code(completion)]).startswith(HEADER + CODE1 + "\n[DONE]\n\n")
    assert build_prompt(TASK, [release_extract(completion)]).startswith(HEADER + CODE1 + "\n[DONE]\n\n")


def test_fewshot_for_picks_the_source_by_task_set(tmp_path):
    """mbpp-*: the MBPP prompt split (task_ids 2..n+1); humaneval / toy-*: the offline default; n=0: ""."""
    import json

    from cocos_lib.prompts import fewshot_for

    rows = [{"text": f"Task {i}.", "code": f"def f{i}():\n    return {i}", "task_id": i, "test_setup_code": "",
             "test_list": [f"assert f{i}() == {i}"], "challenge_test_list": []} for i in (1, 2, 3, 4)]
    (tmp_path / "mbpp.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    mbpp2 = "".join(
        f"You are an expert Python programmer, and here is your task: Task {i}. Your code should pass these tests:"
        f"\n\nassert f{i}() == {i}\n\n[BEGIN]\ndef f{i}():\n    return {i}\n[DONE]\n\n" for i in (2, 3))
    for name in ("mbpp-test", "mbpp-train", "mbpp-validation"):
        assert fewshot_for(name, 2, path=str(tmp_path)) == mbpp2
        assert fewshot_for(name, 0, path=str(tmp_path / "missing")) == ""  # n=0 reads nothing
    default2 = fewshot_block(n=2)
    assert default2.startswith("You are an expert Python programmer") and default2.count("[DONE]\n\n") == 2
    for name in ("humaneval", "toy-test", "toy-train"):
        assert fewshot_for(name, 2, path=str(tmp_path)) == default2  # path is MBPP-only
        assert fewshot_for(name, 0) == ""
    with pytest.raises(ValueError, match="4 few-shot examples requested, 3 available"):
        fewshot_for("toy-test", 4)
    with pytest.raises(ValueError, match="4 few-shot examples requested, 3 available"):
        fewshot_for("mbpp-test", 4, path=str(tmp_path))  # prompt split here: ids 2, 3, 4


RELEASE_CASES = [   # (completion, the release's code_process(text.strip()).strip())
    ("def f():\n    return 1\n[DONE]\nYou are an expert", "def f():\n    return 1"),
    ("[BEGIN]\ndef f():\n    return 1\n[DONE]", "def f():\n    return 1"),
    ("```python\ndef f(): pass\n```\n[DONE] more", "def f(): pass"),
    ("Sure! Here is the code:\n```python\n" + F + "\n```", "Sure! Here is the code:\n```python\n" + F + "\n```"),
    ("[CORRECT]\nx = 1", "[CORRECT]\nx = 1"),   # no [DONE]: kept as it is, marker included
    ("", ""),
]


@pytest.mark.parametrize("text,want", RELEASE_CASES)
def test_release_extraction_is_code_process(text, want):
    assert release_extract(text) == want
    assert extract_answer(text, "completion", "release") == want
    assert code_process(text.strip()).strip() == want


def test_extraction_is_a_named_setting():
    chatter = "Sure! Here is the code:\n```python\n" + F + "\n```"
    assert extract_answer(chatter) == F                                    # lenient: the fenced block
    assert extract_answer(chatter, "completion", "release") == chatter    # release: no [DONE], kept as is
    # chat: the closing fence is the format's [DONE] under "release"; the prefill is not part of the text
    assert extract_answer(F + "\n```", "chat", "release") == F
    assert extract_answer(F + "\n```", "chat") == F
    with pytest.raises(ValueError, match="field 'extraction': unknown extraction 'strict'"):
        extract_answer(F, extraction="strict")
