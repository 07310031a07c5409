"""release.py: the authors' evaluation prompts, golden strings written out by hand from their
cocos/prompts.py (MBPP and HumanEval, turns 1-3, with and without a few-shot block), the
extraction order, the pad-token table and the released pairs."""
import pytest

from cocos_lib.release import authors as release
from cocos_lib.tasks import Task

MBPP = Task("MBPP/2", "Write a function to find the shared elements from the given two lists.",
            ("assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)",
             "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)\n"),
            entry_point="similar_elements", reference="def similar_elements(a, b):\n  return tuple(set(a) & set(b))",
            source="mbpp")
SHOT_A = Task("MBPP/3", "Write a python function to identify non-prime numbers.",
              ("assert is_not_prime(2) == False", "assert is_not_prime(10) == True"),
              reference="def is_not_prime(n):\n    return n < 2 or any(n % i == 0 for i in range(2, n))", source="mbpp")
SHOT_B = Task("MBPP/4", "Write a function to add two numbers.", ("assert add(1, 2) == 3",),
              reference="def add(a, b):\n    return a + b", source="mbpp")
HUMANEVAL = Task("HumanEval/0", "Write a function `add(x: int, y: int) -> int` for this problem.\nAdd two numbers x and y",
                 ("assert add(1, 2) == 3", "assert add(0, 0) == 0"), setup="from typing import List",
                 entry_point="add", source="humaneval")

HEADER = ("You are an expert Python programmer, and here is your task: Write a function to find the shared elements "
          "from the given two lists. Your code should pass these tests:\n\n"
          "assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)\n"
          "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)\n\n[BEGIN]\n")
INSTRUCTION = ("\n\nThere might be an error in the code above because of lack of understanding of the question. "
               "Please correct the error, if any, and rewrite the solution. Only output the final correct Python "
               "program!\n\n")
FEWSHOT = ("You are an expert Python programmer, and here is your task: Write a python function to identify non-prime "
           "numbers. Your code should pass these tests:\n\nassert is_not_prime(2) == False\n"
           "assert is_not_prime(10) == True\n\n[BEGIN]\n"
           "def is_not_prime(n):\n    return n < 2 or any(n % i == 0 for i in range(2, n))\n[DONE]\n\n"
           "You are an expert Python programmer, and here is your task: Write a function to add two numbers. "
           "Your code should pass these tests:\n\nassert add(1, 2) == 3\n\n[BEGIN]\n"
           "def add(a, b):\n    return a + b\n[DONE]\n\n")
HE_HEADER = ("You are an expert Python programmer, and here is your task: Write a python function add. "
             "Your code should pass these tests:\n\nassert add(1, 2) == 3\nassert add(0, 0) == 0\n\n[BEGIN]\n")
CODE1, CODE2 = "def similar_elements(a, b):\n    return a", "def similar_elements(a, b):\n    return b"


def test_instruction_block_and_limits():
    assert release.INSTRUCTION_BLOCK == INSTRUCTION
    assert (release.MAX_PROMPT_TOKENS, release.MAX_NEW_TOKENS, release.BATCH_SIZE) == (8192, 512, 8)


def test_mbpp_without_fewshot_turns_1_to_3():
    assert release.prompt(MBPP) == HEADER
    assert release.prompt(MBPP, [CODE1]) == HEADER + CODE1 + "\n[DONE]" + INSTRUCTION + "[CORRECT]\n"
    assert release.prompt(MBPP, [CODE1, CODE2]) == HEADER + CODE2 + "\n[DONE]" + INSTRUCTION + "[CORRECT]\n"


def test_mbpp_with_fewshot_turns_1_to_3():
    block = release.fewshot_block([SHOT_A, SHOT_B])
    assert block == FEWSHOT
    assert release.prompt(MBPP, [], block) == FEWSHOT + HEADER
    # turn >= 2: no few-shot block, and the ending is [BEGIN] because a block is in use
    assert release.prompt(MBPP, [CODE1], block) == HEADER + CODE1 + "\n[DONE]" + INSTRUCTION + "[BEGIN]\n"
    assert release.prompt(MBPP, [CODE1, CODE2], block) == HEADER + CODE2 + "\n[DONE]" + INSTRUCTION + "[BEGIN]\n"


def test_fewshot_block_is_left_stripped_and_needs_solutions():
    lead = Task("MBPP/5", " Add.", ("assert f() == 1",), reference="def f():\n    return 1", source="mbpp")
    assert release.fewshot_block([lead]).startswith("You are an expert")
    assert release.fewshot_block([]) == ""
    with pytest.raises(release.ReleaseError, match="few-shot task X has no reference solution"):
        release.fewshot_block([Task("X", "t", ("assert 1",))])


def test_humaneval_turns_1_to_3_never_fewshot():
    last = "\ndef add(x, y):\n    return x - y\n\n"
    assert release.prompt(HUMANEVAL) == HE_HEADER
    assert release.prompt(HUMANEVAL, [], FEWSHOT) == HE_HEADER          # the release's HumanEval prompt takes none
    assert release.prompt(HUMANEVAL, ["x = 1", last]) == (
        HE_HEADER + "\ndef add(x, y):\n    return x - y" + "\n[DONE]" + INSTRUCTION + "[CORRECT]\n")
    assert release.prompt(HUMANEVAL, [last], FEWSHOT) == release.prompt(HUMANEVAL, [last])
    assert "Add two numbers" not in release.prompt(HUMANEVAL)               # no docstring


@pytest.mark.parametrize("text, mbpp, humaneval", [
    ("def f():\n    return 1\n[DONE]\nYou are an expert", "def f():\n    return 1", "def f():\n    return 1\n"),
    ("[BEGIN]\ndef f():\n    return 1\n[DONE]", "def f():\n    return 1", "\ndef f():\n    return 1\n"),
    ("```python\ndef f(): pass\n```\n[DONE] more", "def f(): pass", "def f(): pass\n"),
    ("  [CORRECT]\nx = 1\n[DONE][DONE]", "x = 1", "\nx = 1\n"),
    ("def f():\n    return 1\n", "def f():\n    return 1", "def f():\n    return 1\n"),   # no [DONE]: kept as is
    ("[CORRECT]\nx = 1", "[CORRECT]\nx = 1", "[CORRECT]\nx = 1"),                        # markers too
    ("", "", ""),
])
def test_extraction_as_released(text, mbpp, humaneval):
    assert release.extract(text, MBPP) == mbpp
    assert release.extract(text, HUMANEVAL) == humaneval


def test_pad_tokens_and_families():
    assert release.PAD_TOKENS == {"llama": ("<|finetune_right_pad_id|>", 128004), "qwen": ("<|endoftext|>", 151643),
                                  "deepseek": ("<｜end▁of▁sentence｜>", 32014)}
    assert [release.family(p.checkpoint) for p in release.PAIRS] == ["qwen", "llama", "deepseek"]
    assert [release.family(p.base) for p in release.PAIRS] == ["qwen", "llama", "deepseek"]
    assert release.family("gpt2") is None and release.family("/tmp/my-QWEN-run") == "qwen"


def test_pairs_roles_and_gated_note():
    assert [(p.checkpoint, p.base) for p in release.PAIRS] == [
        ("Jay-Cho/CoCoS-Qwen2.5-1.5B", "Qwen/Qwen2.5-1.5B"), ("Jay-Cho/CoCoS-Llama-3.2-1B", "meta-llama/Llama-3.2-1B"),
        ("Jay-Cho/CoCoS-deepseek-coder-1.3b-base", "deepseek-ai/deepseek-coder-1.3b-base")]
    assert release.is_checkpoint("Jay-Cho/CoCoS-Llama-3.2-1B") and not release.is_base("Jay-Cho/CoCoS-Llama-3.2-1B")
    assert release.is_base("deepseek-ai/deepseek-coder-1.3b-base")
    note = release.gated_note("meta-llama/Llama-3.2-1B")
    assert "gated" in note and "https://huggingface.co/meta-llama/Llama-3.2-1B" in note and "HF_TOKEN" in note
    assert release.gated_note("Qwen/Qwen2.5-1.5B") == "" and release.gated_note("Jay-Cho/CoCoS-Llama-3.2-1B") == ""
    with pytest.raises(release.ReleaseError, match="expected one of Qwen2.5-1.5B, Llama-3.2-1B, deepseek-coder-1.3b"):
        release.pair("gpt2")


def test_humaneval_release_task_set_is_the_papers_format():
    """#21 item 5: the paper's HumanEval numbers come from "Write a python function {entry_point}." (no
    docstring): the task set humaneval-release holds that text, so the repo's own prompts are the release's."""
    from cocos_lib import prompts
    from cocos_lib.task_sets import TASK_SETS, load_tasks
    assert "humaneval-release" in TASK_SETS
    plain, rel = load_tasks("humaneval"), load_tasks("humaneval-release")
    assert len(rel) == 164 and [t.tests for t in rel] == [t.tests for t in plain]
    assert rel[0].text == "Write a python function has_close_elements." and "Check if" in plain[0].text
    for a, b in zip(plain[:5], rel[:5]):
        assert release.prompt(a) == prompts.build_prompt(b, []) == release.header(b)
        assert release.prompt(a, ["x = 1\n"]) == prompts.build_prompt(b, ["x = 1\n"])
