"""The real Qwen2.5-Coder-0.5B-Instruct, from the cocos cache that `make setup` fills (no network).

Not skipped when the model is missing: the install step guarantees it, so its absence is a
failure with one line saying what to run.
"""
import json
from pathlib import Path

import pytest

from cocos_lib import registry_models as RM

NAME = "qwen2.5-coder-0.5b-instruct"
RESULTS = Path(__file__).resolve().parents[1] / "data" / "results" / "real"


@pytest.fixture(scope="module")
def real_dir():
    folder = RM.fetched_dir(NAME)
    if folder is None:
        pytest.fail(f"{NAME} is not in the cache {RM.model_dir(NAME)}: run `make setup`", pytrace=False)
    return folder


@pytest.fixture(scope="module")
def real_policy(real_dir):
    from cocos_lib.models import load_policy
    return load_policy(NAME, dtype="fp32", device="cpu")


def test_cached_folder_is_the_pinned_model(real_dir):
    marker = json.loads((real_dir / RM.MARKER).read_text())
    assert marker["sha256"] == RM.REGISTRY[NAME].sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    config = json.loads((real_dir / "config.json").read_text())
    assert (config["model_type"], config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (
        "qwen2", 24, 896, 151936)
    assert "quantization_config" not in config and config["dtype"] == "bfloat16"
    assert json.loads((real_dir / "generation_config.json").read_text())["eos_token_id"] == [151645, 151643]


def test_greedy_answer_passes_humaneval_0(real_policy):
    """Chat prompt, greedy, stop at the closing fence: the answer to HumanEval/0 passes every test."""
    from cocos_lib.executor import Executor
    from cocos_lib.sampling import SamplingConfig
    from cocos_lib.rollout import RolloutConfig, rollout
    from cocos_lib.tasks import load_humaneval
    task = load_humaneval()[0]
    cfg = RolloutConfig(turns=1, k=1, prompt_format="chat", sampling=SamplingConfig(greedy=True, max_new_tokens=320))
    with Executor(workers=1) as ex:
        (traj,) = rollout(real_policy, [task], cfg, ex)
    turn = traj.turns[0]
    assert turn.text.rstrip().endswith("```") and len(turn.completion_ids) < 320  # stopped at the fence
    assert turn.code.startswith("def has_close_elements(") and "```" not in turn.code
    assert turn.report.all_passed and turn.report.outcomes == ("passed",) * len(task.tests)


def test_committed_tokenizer_facts_match_the_tokenizer(real_policy):
    """data/results/real/tokenizer_facts.json recomputed from the cached tokenizer (solutions, prompts)."""
    import runpy
    facts = runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" / "tokenizer_facts.py"))
    from cocos_lib.tasks import load_humaneval
    committed = json.loads((RESULTS / "tokenizer_facts.json").read_text())
    fresh = facts["facts"](real_policy.tokenizer, load_humaneval())
    for group in ("solutions", "prompts"):
        for name, d in fresh[group].items():
            assert committed[group][name]["counts"] == d["counts"], name
    assert committed["solutions"]["reference_program_done"]["median"] == 168.5
