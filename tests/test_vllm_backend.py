"""The "vllm" backend (cocos_lib/generation/vllm.py VLLMEngine, vllm_generate) against a fake vLLM: what it hands the
engine (model path, dtype, length budget), the prefix-cache reset after each weight refresh, the sampling
parameters (ignore_eos), the merged LoRA weights. No vLLM and no GPU here: the fake records the calls."""
import functools
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from cocos_lib import hardware, registry_models
from cocos_lib.toy import warmstart as toy
from cocos_lib.generation import vllm as vllm_backend
from cocos_lib.generation.static import FastGenError
from cocos_lib.generation.vllm import VLLMEngine, vllm_generate, vllm_max_model_len
from cocos_lib.models import LoraSpec, load_policy
from cocos_lib.sampling import SamplingConfig

ROOT = Path(__file__).resolve().parent.parent
T4 = hardware.Hardware("cuda", "Tesla T4", (7, 5), 14.7)
A100 = hardware.Hardware("cuda", "NVIDIA A100", (8, 0), 39.4)


class FakeModel:
    def __init__(self, log):
        self.log = log

    def load_weights(self, weights):
        self.log.append(("load_weights", {k: v.clone() for k, v in weights}))


class FakeLLM:
    """vLLM's LLM as the backend uses it: V1's apply_model, reset_prefix_cache, generate on token ids."""

    def __init__(self, log, **kwargs):
        self.log = log
        self.log.append(("LLM", kwargs))

    def apply_model(self, fn):
        return fn(FakeModel(self.log))

    def reset_prefix_cache(self):
        self.log.append(("reset_prefix_cache", None))

    def generate(self, prompts, params, use_tqdm=True):
        self.log.append(("generate", params))
        return [SimpleNamespace(outputs=[SimpleNamespace(token_ids=[7, 8, 9])]) for _ in prompts]


def fake_vllm(log):
    return SimpleNamespace(LLM=functools.partial(FakeLLM, log), SamplingParams=lambda **kw: kw)


def engine_factory(log, hardware=A100):
    return functools.partial(VLLMEngine, vllm_api=fake_vllm(log), hardware=hardware)


def events(log):
    return [name for name, _ in log]


def test_prefix_cache_is_reset_after_every_weight_refresh(tiny_policy_dir):
    """After an update the engine must not reuse attention cached with the previous weights (TRL resets too)."""
    policy = load_policy(tiny_policy_dir, dtype="fp32", device="cpu")
    log = []
    cfg = SamplingConfig(max_new_tokens=8, stop=None)
    for _ in range(2):
        vllm_generate(policy, [[3, 4], [5]], cfg, seed=1, engine_factory=engine_factory(log))
        with torch.no_grad():                                          # an "update"
            next(policy.model.parameters()).add_(1.0)
    assert events(log) == ["LLM", "load_weights", "reset_prefix_cache", "generate",
                           "load_weights", "reset_prefix_cache", "generate"]
    first, second = [w for name, w in log if name == "load_weights"]
    name = next(iter(first))
    assert torch.equal(second[name], first[name] + 1.0)               # the refreshed weights went in
    assert policy.decode_cache.vllm_engine is not None and events(log).count("LLM") == 1   # one engine


@pytest.mark.parametrize("ignore_eos", [False, True])
def test_sampling_params_carry_ignore_eos(tiny_policy_dir, ignore_eos):
    policy = load_policy(tiny_policy_dir, dtype="fp32", device="cpu")
    log = []
    cfg = SamplingConfig(max_new_tokens=8, stop="[DONE]", ignore_eos=ignore_eos, temperature=0.7)
    vllm_generate(policy, [[3, 4], [5]], cfg, seed=10, engine_factory=engine_factory(log))
    params = next(p for name, p in log if name == "generate")
    assert [p["ignore_eos"] for p in params] == [ignore_eos, ignore_eos]
    assert [p["seed"] for p in params] == [10, 11] and params[0]["stop"] == ["[DONE]"]
    assert params[0]["max_tokens"] == 8 and params[0]["temperature"] == 0.7


def test_ignore_eos_keeps_tokens_after_eos(tiny_policy_dir):
    """With ignore_eos the rows run past EOS (as the static backend's): the host pass must not cut them there."""
    policy = load_policy(tiny_policy_dir, dtype="fp32", device="cpu")
    eos = policy.eos_token_ids[0]
    log = []
    factory = engine_factory(log)
    out = {}
    for ignore in (False, True):
        policy.decode_cache.vllm_engine = None
        engine = factory(policy, 2304)
        engine.llm.generate = lambda prompts, params, use_tqdm=True: [
            SimpleNamespace(outputs=[SimpleNamespace(token_ids=[7, eos, 9])]) for _ in prompts]
        policy.decode_cache.vllm_engine = engine
        out[ignore] = vllm_generate(policy, [[3]], SamplingConfig(max_new_tokens=3, stop=None, ignore_eos=ignore))
    assert out == {False: [[7, eos]], True: [[7, eos, 9]]}


def test_engine_gets_a_loadable_path_never_a_short_name(tiny_policy_dir, tmp_path, monkeypatch):
    log = []
    warm = load_policy("tiny-warmstart", dtype="fp32", device="cpu")
    VLLMEngine(warm, 2304, vllm_api=fake_vllm(log), hardware=A100)
    assert log[-1][1]["model"] == str(toy.warmstart_path())
    # a registry short name: its converted folder in the cocos cache (faked here)
    name = next(iter(registry_models.REGISTRY))
    monkeypatch.setattr(registry_models, "fetched_dir", lambda n: Path(tiny_policy_dir) if n == name else None)
    short = load_policy(name, dtype="fp32", device="cpu")
    VLLMEngine(short, 2304, vllm_api=fake_vllm(log), hardware=A100)
    assert log[-1][1]["model"] == str(tiny_policy_dir)


def test_a_lora_only_checkpoint_serves_its_base_with_the_merged_weights(tiny_policy_dir, tmp_path):
    lora = load_policy(tiny_policy_dir, dtype="fp32", device="cpu", lora=LoraSpec(r=4))
    with torch.no_grad():
        for n, p in lora.model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    saved = lora.save(tmp_path / "adapter")
    assert not (Path(saved) / "config.json").exists()                 # adapter only: vLLM could not load it
    policy = load_policy(saved, dtype="fp32", device="cpu")
    log = []
    vllm_generate(policy, [[3, 4]], SamplingConfig(max_new_tokens=4, stop=None), engine_factory=engine_factory(log))
    assert log[0][1]["model"] == str(tiny_policy_dir)
    weights = next(w for name, w in log if name == "load_weights")
    base = load_policy(tiny_policy_dir, dtype="fp32", device="cpu").model.state_dict()
    assert set(weights) == set(base)                                   # merged: the base model's names, no lora_*
    q = next(k for k in base if k.endswith("q_proj.weight"))
    assert not torch.equal(weights[q], base[q])                        # the adapter's update is in them


def test_length_budget_holds_the_longest_humaneval_turn2_prompt(tiny_policy_dir):
    facts = json.loads((ROOT / "data" / "results" / "real" / "tokenizer_facts.json").read_text())
    longest = max(v["max"] for k, v in facts["prompts"].items() if "turn2" in k)
    assert vllm_backend.LONGEST_TURN2_PROMPT == longest == 1763
    assert vllm_max_model_len(512) == 2304 >= longest + 512 > 2048     # the old 2,048 refused it
    policy = load_policy(tiny_policy_dir, dtype="fp32", device="cpu")
    log = []
    vllm_generate(policy, [[3] * 10], SamplingConfig(max_new_tokens=512, stop=None),
                  engine_factory=engine_factory(log))
    assert log[0][1]["max_model_len"] == 2304 and log[0][1]["enable_prefix_caching"] is True
    with pytest.raises(FastGenError, match="a prompt of 1800 tokens \\+ 512 new tokens exceeds the engine's "
                                           "max_model_len=2304"):
        vllm_generate(policy, [[3] * 1800], SamplingConfig(max_new_tokens=512, stop=None))


def test_engine_dtype_is_the_one_precision_decision(tiny_policy_dir):
    log = []
    fp16 = load_policy(tiny_policy_dir, dtype="fp16", device="cpu")
    VLLMEngine(fp16, 2304, vllm_api=fake_vllm(log), hardware=T4)
    assert log[-1][1]["dtype"] == "float16"
    bf16 = load_policy(tiny_policy_dir, dtype="bf16", device="cpu")
    with pytest.raises(FastGenError, match="bf16 weights on CUDA GPU Tesla T4 \\(compute 7.5, 14.7 GiB\\), which has no bf16"):
        VLLMEngine(bf16, 2304, vllm_api=fake_vllm(log), hardware=T4)
    VLLMEngine(bf16, 2304, vllm_api=fake_vllm(log), hardware=A100)
    assert log[-1][1]["dtype"] == "bfloat16"


def test_install_hint_keeps_the_torch_that_is_there():
    hint = vllm_backend.vllm_install_hint("2.8.0+cu126")
    assert 'echo "torch==2.8.0+cu126" > /tmp/keep-torch.txt && pip install -c /tmp/keep-torch.txt vllm' in hint
