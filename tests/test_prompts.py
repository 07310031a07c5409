"""Prompt formats (golden strings from docs/paper.md §2 "Prompts" and §8) and extract_code."""
import pytest

from cocos_lib.prompts import (BEGIN, CORRECT, CORRECTION_INSTRUCTION, DONE, build_prompt, chat_messages,
                               correction_prompt, default_fewshot_tasks, extract_code, fewshot_block, mbpp_fewshot_block,
                               task_header, turn1_prompt)
from cocos_lib.tasks import Task

TASK = Task("MBPP/2", "Write a function to find the shared elements from the given two lists.",
            ("assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)",
             "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)"),
            entry_point="similar_elements", reference="def similar_elements(a, b):\n  return tuple(set(a) & set(b))")

HEADER = ("You are an expert Python programmer, and here is your task: Write a function to find the shared elements "
          "from the given two lists. Your code should pass these tests:\n\n"
          "assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)\n"
          "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)\n")
INSTRUCTION = ("There might be an error in the code above because of lack of understanding of the question. "
               "Please correct the error, if any, and rewrite the solution. Only output the final correct Python program!")
CODE1, CODE2 = "def similar_elements(a, b):\n    return a", "def similar_elements(a, b):\n    return b"


def test_markers_and_instruction_verbatim():
    assert (BEGIN, DONE, CORRECT) == ("[BEGIN]", "[DONE]", "[CORRECT]")
    assert CORRECTION_INSTRUCTION == INSTRUCTION


def test_header_and_turn1():
    assert task_header(TASK) == HEADER
    assert turn1_prompt(TASK) == HEADER + "[BEGIN]\n"
    assert turn1_prompt(TASK, fewshot="FEW\n\n") == "FEW\n\n" + HEADER + "[BEGIN]\n"


def test_correction_prompt_both_endings():
    assert correction_prompt(TASK, CODE1) == HEADER + CODE1 + "\n[DONE]\n\n" + INSTRUCTION + "\n\n[CORRECT]\n"
    assert correction_prompt(TASK, CODE1, ending="begin") == HEADER + CODE1 + "\n[DONE]\n\n" + INSTRUCTION + "\n\n[BEGIN]\n"
    with pytest.raises(ValueError, match="field 'ending': unknown ending 'done'"):
        correction_prompt(TASK, CODE1, ending="done")


def test_build_prompt_turns():
    assert build_prompt(TASK, [], fewshot="FEW") == "FEW" + HEADER + "[BEGIN]\n"
    assert build_prompt(TASK, [CODE1], fewshot="FEW") == HEADER + CODE1 + "\n[DONE]\n\n" + INSTRUCTION + "\n\n[CORRECT]\n"
    # turn 3 shows only the most recent attempt, and never the few-shot block
    assert build_prompt(TASK, [CODE1, CODE2], fewshot="FEW", ending="begin") == (
        HEADER + CODE2 + "\n[DONE]\n\n" + INSTRUCTION + "\n\n[BEGIN]\n")


def test_fewshot_block_from_tasks_and_default():
    assert fewshot_block([TASK], n=1) == HEADER + "[BEGIN]\ndef similar_elements(a, b):\n  return tuple(set(a) & set(b))\n[DONE]\n\n"
    assert fewshot_block([TASK, TASK], n=0) == ""
    with pytest.raises(ValueError, match="field 'n': 4 few-shot examples requested, 3 available"):
        fewshot_block(n=4)
    with pytest.raises(ValueError, match="field 'reference': few-shot task X has no solution"):
        fewshot_block([Task("X", "t", ("assert 1",))], n=1)
    block = fewshot_block()
    assert block.startswith(
        "You are an expert Python programmer, and here is your task: Write a function to return the sum of the squares "
        "of the numbers in a list. Your code should pass these tests:\n\nassert sum_of_squares([1, 2, 3]) == 14\n"
        "assert sum_of_squares([]) == 0\nassert sum_of_squares([-2, 5]) == 29\n[BEGIN]\ndef sum_of_squares(nums):\n"
        "    total = 0\n    for x in nums:\n        total += x * x\n    return total\n[DONE]\n\n")
    assert block.count("[BEGIN]\n") == 3 and block.count("\n[DONE]\n\n") == 3 and block.endswith("[DONE]\n\n")
    assert fewshot_block(n=1) == block[:block.index("[DONE]\n\n") + 8]


def test_mbpp_fewshot_block_uses_prompt_split_ids_2_to_4(tmp_path):
    import json

    rows = [{"text": f"Task {i}.", "code": f"def f{i}():\r\n    return {i}", "task_id": i, "test_setup_code": "",
             "test_list": [f"assert f{i}() == {i}"], "challenge_test_list": []} for i in (1, 2, 3, 4, 5, 11)]
    (tmp_path / "mbpp.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    block = mbpp_fewshot_block(n=3, path=str(tmp_path))
    assert block == "".join(
        f"You are an expert Python programmer, and here is your task: Task {i}. Your code should pass these tests:"
        f"\n\nassert f{i}() == {i}\n[BEGIN]\ndef f{i}():\n    return {i}\n[DONE]\n\n" for i in (2, 3, 4))


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
    assert chat_messages(TASK, []) == [sys_msg, {"role": "user", "content": HEADER.rstrip("\n")}]
    assert chat_messages(TASK, [CODE1, CODE2]) == [
        sys_msg, {"role": "user", "content": HEADER.rstrip("\n")},
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


def test_fewshot_for_picks_the_source_by_task_set(tmp_path):
    """mbpp-*: the MBPP prompt split (task_ids 2..n+1); humaneval / toy-*: the offline default; n=0: ""."""
    import json

    from cocos_lib.prompts import fewshot_for

    rows = [{"text": f"Task {i}.", "code": f"def f{i}():\n    return {i}", "task_id": i, "test_setup_code": "",
             "test_list": [f"assert f{i}() == {i}"], "challenge_test_list": []} for i in (1, 2, 3, 4)]
    (tmp_path / "mbpp.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    mbpp2 = "".join(
        f"You are an expert Python programmer, and here is your task: Task {i}. Your code should pass these tests:"
        f"\n\nassert f{i}() == {i}\n[BEGIN]\ndef f{i}():\n    return {i}\n[DONE]\n\n" for i in (2, 3))
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
