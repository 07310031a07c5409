"""Rollout backend "vllm": a colocated vLLM engine per policy (optional: `pip install vllm`, see
`vllm_install_hint` for Colab), tested against a fake engine (tests/test_vllm_backend.py; no vLLM in CI, no GPU).

Output contract (cocos_lib.sampling): as the "hf" and "static" backends, completion ids per prompt, truncated with
the hf backend's rule (fastgen._finalise, as packed.py).
"""
from __future__ import annotations

import copy
import functools
import importlib
import json
import os
from pathlib import Path

import torch

from cocos_lib import hardware as hw_facts
from cocos_lib.generation.static import FastGenError, _finalise, decode_cache
from cocos_lib.models import resolve_model

# The length budget of a vLLM engine: the longest turn-2 prompt of HumanEval (the longest task set) with the
# Qwen2.5 tokenizer, chat format (data/results/real/tokenizer_facts.json, benchmarks/tokenizer_facts.py; the
# completion format's is 1,718), plus the new tokens, rounded up to a multiple of 256. 2,048 would refuse it.
LONGEST_TURN2_PROMPT = 1763


def model_path(policy) -> str:
    """What `LLM(model=...)` loads: `models.resolve_model(policy.name)` (a registry short name or "tiny-warmstart"
    becomes its folder); for a LoRA-only checkpoint, its base model's (the merged weights arrive with the engine's
    first weight refresh, as TRL starts vLLM from the base)."""
    path = resolve_model(policy.name)
    adapter = Path(path, "adapter_config.json")
    if adapter.is_file() and not Path(path, "config.json").is_file():
        return resolve_model(json.loads(adapter.read_text())["base_model_name_or_path"])
    return path


def vllm_max_model_len(max_new_tokens: int, longest_prompt: int = LONGEST_TURN2_PROMPT) -> int:
    """Positions the engine must hold: the longest prompt plus max_new_tokens, rounded up to 256 (2,304 at 512)."""
    return -(-(longest_prompt + max_new_tokens) // 256) * 256


def vllm_install_hint(torch_version: str) -> str:
    """How to add vLLM without replacing the torch already there (Colab's CUDA build): a constraint file pins torch,
    so pip installs a vLLM release built for that torch or stops with a conflict, never swaps torch."""
    return (f'echo "torch=={torch_version}" > /tmp/keep-torch.txt && pip install -c /tmp/keep-torch.txt vllm '
            "(the constraint keeps this torch: pip picks a vLLM built for it, or refuses)")


class VLLMEngine:
    """A colocated vLLM engine for one policy, following vLLM's documented `LLM`, `SamplingParams`,
    `reset_prefix_cache` and model `load_weights` API; tested here against a fake engine (no vLLM in CI, no GPU):
    the model path, dtype, length budget, prefix-cache reset and sampling parameters it hands vLLM.
    The engine runs in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0) so that weights can be copied in;
    gpu_memory_utilization leaves the rest of the card to training.
    - model: `model_path(policy)`: a folder or hub name vLLM can load, never a registry short name or a LoRA-only
      checkpoint (its base model; the merged weights arrive with the first refresh).
    - dtype: the policy's, which must be the device's precision (hardware.precision: never bf16 on a T4).
    - prefix caching on, and reset after every weight refresh (as TRL does): cached attention of the previous
      weights would otherwise be reused for prompts seen before the update.
    - ignore_eos passed to SamplingParams (the released no-stop rollouts)."""

    def __init__(self, policy, max_model_len: int, gpu_memory_utilization: float = 0.3, seed: int = 0,
                 vllm_api=None, hardware=None):
        """vllm_api: what provides `LLM` and `SamplingParams` (the vllm module; a fake in tests);
        hardware: hardware.Hardware (hardware.detect() when None)."""
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        if vllm_api is None:
            try:
                vllm_api = importlib.import_module("vllm")
            except ImportError as e:
                raise ImportError("backend 'vllm' needs vLLM; " + vllm_install_hint(torch.__version__)) from e
        self.params_cls = vllm_api.SamplingParams
        dtype = next(policy.model.parameters()).dtype
        hw = hardware if hardware is not None else hw_facts.detect()
        if hw.cuda and dtype == torch.bfloat16 and not hw.bf16:
            raise FastGenError(f"backend 'vllm': bf16 weights on {hw.describe()}, which has no bf16 (vLLM refuses "
                               "it); load the policy with dtype 'auto' or 'fp16'")
        self.llm = vllm_api.LLM(model=model_path(policy), dtype=str(dtype).removeprefix("torch."),
                           gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
                           enable_prefix_caching=True, seed=seed)
        self.max_model_len = max_model_len

    def refresh_weights(self, policy) -> None:
        """Copy pi_theta's current weights into the engine (LoRA merged into a copy first), then reset the
        prefix cache: its blocks hold attention computed with the previous weights."""
        model = policy.model
        if hasattr(model, "merge_and_unload"):
            model = copy.deepcopy(model).merge_and_unload()
        weights = [(k, v.detach()) for k, v in model.state_dict().items()]
        if hasattr(self.llm, "apply_model"):  # vLLM V1, in-process engine core
            self.llm.apply_model(functools.partial(_load_weights, weights=weights))
        else:  # vLLM V0
            self.llm.llm_engine.model_executor.driver_worker.model_runner.model.load_weights(weights=weights)
        self.llm.reset_prefix_cache()

    def generate(self, prompt_ids, cfg, seed: int | None = None) -> list[list[int]]:
        longest = max(len(p) for p in prompt_ids)
        if longest + cfg.max_new_tokens > self.max_model_len:
            raise FastGenError(f"backend 'vllm': a prompt of {longest} tokens + {cfg.max_new_tokens} new tokens "
                               f"exceeds the engine's max_model_len={self.max_model_len}")
        params = [self.params_cls(n=1, max_tokens=cfg.max_new_tokens, top_p=cfg.top_p,
                                  temperature=0.0 if cfg.greedy else cfg.temperature,
                                  seed=None if seed is None else seed + i,  # distinct stream per prompt
                                  stop=[cfg.stop] if cfg.stop else None, include_stop_str_in_output=True,
                                  ignore_eos=cfg.ignore_eos)
                  for i in range(len(prompt_ids))]
        outs = self.llm.generate([{"prompt_token_ids": list(p)} for p in prompt_ids], params, use_tqdm=False)
        return [list(o.outputs[0].token_ids) for o in outs]


def _load_weights(model, weights):
    """vLLM's model.load_weights on (name, tensor) pairs (what `LLM.apply_model` runs in the engine)."""
    return model.load_weights(weights=weights)


def vllm_generate(policy, prompt_ids, cfg, seed: int | None = None, refresh: bool = True,
                  engine_factory=VLLMEngine) -> list[list[int]]:
    """Backend "vllm". One engine per policy, built on first use (max_model_len: `vllm_max_model_len` of
    cfg.max_new_tokens, or of the longest prompt here when that is longer) and kept on the policy's DecodeCache
    (`vllm_engine`); with `refresh` the current weights are copied in first (a GPU-to-GPU copy) and the prefix
    cache reset, so every call samples from the current pi_theta after an update. Output truncated with the hf
    backend's rule. engine_factory: VLLMEngine, or a stand-in for tests."""
    cache = decode_cache(policy)
    engine = cache.vllm_engine
    if engine is None:
        longest = max((len(p) for p in prompt_ids), default=0)
        budget = vllm_max_model_len(cfg.max_new_tokens, max(LONGEST_TURN2_PROMPT, longest))
        engine = cache.vllm_engine = engine_factory(policy, budget)
        refresh = True
    if refresh:
        engine.refresh_weights(policy)
    rows = engine.generate(prompt_ids, cfg, seed)
    eos_ids = [] if cfg.ignore_eos else getattr(policy, "eos_token_ids", [])   # as the static backend
    return _finalise(rows, policy.tokenizer, cfg.stop, eos_ids)
