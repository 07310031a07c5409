"""The one entry point of generation, `generate`: batched sampling of completions y ~ pi_theta(. | x)
that stop at a stop string ("[DONE]"). The contract every backend keeps (SamplingConfig, BACKENDS,
the truncation rule) is `cocos_lib.sampling`. Backends:
- "hf": HF `generate` (KV cache, left padding), `cocos_lib.generation.hf`;
- "static" / "vllm": fast GPU backends in `cocos_lib.generation.static` / `cocos_lib.generation.vllm` with the
  same signature `fn(policy, prompt_ids, cfg, seed) -> list[list[int]]`;
- "packed": continuous batching for CPU decoding in `cocos_lib.generation.packed` (finished rows are
  replaced by waiting prompts at once; same signature).
Every backend returns, per prompt, the completion ids truncated right after the stop string
is complete (stop text included), or after the first EOS (included), or at max_new_tokens.
"""
from __future__ import annotations

from typing import Callable

from cocos_lib.generation.hf import hf_generate
from cocos_lib.generation.packed import packed_generate
from cocos_lib.generation.static import static_generate
from cocos_lib.generation.vllm import vllm_generate
from cocos_lib.sampling import BACKENDS, SamplingConfig


def generate(policy, prompt_ids: list[list[int]], cfg: SamplingConfig, seed: int | None = None,
             backend: str = "hf", backends: dict[str, Callable] | None = None) -> list[list[int]]:
    """Sample one completion per prompt; see the module docstring for truncation rules.
    backends: name -> fn(policy, prompt_ids, cfg, seed) (default `GENERATORS`; tests pass their own)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend '{backend}': expected one of {list(BACKENDS)}")
    if not prompt_ids:
        return []
    if backend != "hf" and cfg.top_k and not cfg.greedy:
        raise ValueError(f"backend '{backend}': SamplingConfig.top_k={cfg.top_k} is implemented by the hf backend only")
    return (backends or GENERATORS)[backend](policy, prompt_ids, cfg, seed)


GENERATORS: dict[str, Callable] = {"hf": hf_generate, "static": static_generate, "vllm": vllm_generate,
                                   "packed": packed_generate}  # one per sampling.BACKENDS name
