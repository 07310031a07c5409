"""Fast rollout backends: a static-KV-cache decode loop ("static") and an optional vLLM one.

Generation dominates CoCoS's cost (128 two-turn rollouts per update, up to 512 new tokens a
turn). HF `generate` grows a dynamic cache and syncs with the host every step. `static_generate`
pre-allocates one `StaticCache` of batch x (prompt + max_new_tokens) slots, runs the prompt once
(eager prefill), then a one-token decode step compiled with torch.compile(mode="reduce-overhead")
(CUDA graphs) on CUDA, eager on CPU. It samples on the device with a seeded torch.Generator,
detects EOS and the stop string on the device (a token-level automaton, exact for any
tokenisation of the stop text: `cocos_lib.stop_automaton`) with per-row finished flags, and syncs with the
host only every `check_every` steps: to end once all rows are done and (CPU default) to compact
the batch so finished rows stop costing.

Output contract (cocos_lib.sampling, as the "hf" backend in cocos_lib.generation): completion ids per prompt, cut
right after the stop string (included), or after EOS (included), or at max_new_tokens.
"""
from __future__ import annotations

import copy
import functools
import importlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from cocos_lib import runtime
from cocos_lib.modes import mode
from cocos_lib.sampling import left_pad, truncate_completion
from cocos_lib.stop_automaton import cached_stop_table


class FastGenError(ValueError):
    """Bad input to a fast generation backend."""


@dataclass
class DecodeCache:
    """What the fast backends keep between calls for one policy, held by the caller (`Policy.decode_cache`):
    stop tables per (stop, vocab, tokenizer size, device) (150k decodes take seconds), the "static"
    backend's KV caches per (batch, length) for its `keep` latest shapes (new cache tensors would mean a
    new compile / CUDA-graph capture), and the vLLM engine."""
    stop_tables: dict = field(default_factory=dict)
    static_caches: dict = field(default_factory=dict)   # most recent last
    vllm_engine: Any = None

    def release_static(self) -> None:
        """Free the KV caches the compiled path keeps (e.g. before a big backward)."""
        self.static_caches.clear()


def decode_cache(policy) -> DecodeCache:
    """The policy's DecodeCache (`Policy.decode_cache`); a fresh one for a policy-like object without it."""
    cache = getattr(policy, "decode_cache", None)
    return cache if cache is not None else DecodeCache()


def sample_next(logits: torch.Tensor, temperature: float, top_p: float, greedy: bool,
                generator: torch.Generator | None) -> torch.Tensor:
    """Next token per row from logits [B, V]: argmax if greedy, else softmax(logits / T)
    restricted to the top-p nucleus, drawn by the exponential race (argmax p_v / E_v with
    E_v ~ Exp(1)), which needs no host sync and is reproducible under `generator`."""
    if greedy or temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(-1, descending=True)
        drop = (sorted_p.cumsum(-1) - sorted_p) >= top_p  # keep the smallest set with mass >= top_p
        probs = probs.scatter(-1, order, sorted_p.masked_fill(drop, 0.0))
    noise = torch.empty_like(probs).exponential_(1.0, generator=generator)
    return (probs / noise).argmax(-1)


def _decode_step(model, tokens, positions, mask, cache_kw):
    """One token per row: logits [B, V] of the next token. The function that gets compiled."""
    out = model(input_ids=tokens, attention_mask=mask, position_ids=positions, use_cache=True, **cache_kw)
    return out.logits[:, -1, :]


def _cache_api(model) -> tuple[str, bool]:
    """(cache argument name, takes `cache_position`): recent transformers (5.24) take `cache=` and
    count positions inside the cache; older ones `past_key_values=` and `cache_position=`."""
    import inspect
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(base.forward).parameters
    return ("cache" if "cache" in params else "past_key_values"), "cache_position" in params


def release_static_cache(policy) -> None:
    """Free the KV caches the compiled path keeps for `policy` (e.g. before a big backward)."""
    decode_cache(policy).release_static()


def _static_cache_fresh(model, length: int):
    """A new StaticCache (lazily allocated on the first forward)."""
    import transformers
    try:
        return transformers.StaticCache(config=model.config, max_cache_len=length)
    except TypeError as e:  # transformers < 4.56: eager StaticCache with other arguments
        raise FastGenError(f"backend 'static' needs transformers >= 4.56 (found {transformers.__version__})"
                           "; use backend='hf'") from e


def _compact(cache, keep: torch.Tensor, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Keep batch rows `keep` in every cache layer and every tensor of `tensors`. A layer is set up once its
    tensors exist: `is_initialized` (transformers 5.x), `keys` not None (4.56, which has no such flag)."""
    for layer in cache.layers:
        if not getattr(layer, "is_initialized", getattr(layer, "keys", None) is not None):
            continue
        layer.keys = layer.keys.index_select(0, keep)
        layer.values = layer.values.index_select(0, keep)
        layer.batch_size = len(keep)           # transformers 5.x
        layer.max_batch_size = len(keep)       # transformers 4.56
        if layer.keys.is_cuda:  # static addresses, or CUDA graphs copy the whole cache each replay
            torch._dynamo.mark_static_address(layer.keys)
            torch._dynamo.mark_static_address(layer.values)
    return [t.index_select(0, keep) for t in tensors]


def _bucket(n: int, current: int, min_batch: int) -> int:
    """Smallest power of two >= max(n, min_batch), never above the current batch."""
    return min(current, max(min_batch, 1 << max(0, (max(n, 1) - 1).bit_length())))


def cache_length(tokens: int, floor: int = 256) -> int:
    """The static cache length for `tokens` positions (longest prompt + max_new_tokens): the smallest bucket
    2^k or 3 * 2^(k-1) (256, 384, 512, 768, 1024, 1536, 2048, 3072, ...) that holds them. Turn-2 prompts change
    length every update; rounding to a multiple of 64 gave a new cache shape (a new compile of the decode step,
    past torch.compile's recompile limit soon) almost every update, these buckets a handful for a whole run,
    at most 50% unused slots."""
    bucket = floor
    while bucket < tokens:
        bucket = bucket * 3 // 2 if bucket & (bucket - 1) == 0 else bucket * 4 // 3
    return bucket


def _static_cache(held: dict, model, batch: int, length: int, keep: int = 4):
    """StaticCache per (batch, length) for the `keep` latest shapes, kept in `held` (a DecodeCache's),
    reset per call: new cache tensors would mean a new compile / CUDA-graph capture."""
    cache = held.pop((batch, length), None)
    if cache is None:
        cache = _static_cache_fresh(model, length)
    cache.reset()  # zero the write counters (a fresh, unallocated cache ignores it)
    held[batch, length] = cache  # most recent last
    while len(held) > keep:
        held.pop(next(iter(held)))
    return cache


@torch.no_grad()
def _generate_batch(model, prompt_ids, cfg, generator, table, eos_ids, pad_id, check_every,
                    compact, min_batch, step_fn, forced_lengths, held) -> list[list[int]]:
    device = next(model.parameters()).device
    ids, pad = left_pad(prompt_ids, pad_id, device)
    B, P = ids.shape
    N = cfg.max_new_tokens
    L = cache_length(P + N)                                # bucketed: few distinct compiled shapes
    cache = _static_cache(held, model, B, L) if held is not None and not compact else _static_cache_fresh(model, L)
    mask = torch.arange(L, device=device)[None, :] >= pad[:, None]  # real prompt + all new slots
    positions = (torch.arange(P, device=device)[None, :] - pad[:, None]).clamp(min=0)
    cache_name, wants_position = _cache_api(model)
    kw = {cache_name: cache, **({"cache_position": torch.arange(P, device=device)} if wants_position else {})}
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                   logits_to_keep=1, **kw).logits[:, -1, :]
    slot = torch.full((1,), P - 1, dtype=torch.long, device=device)  # cache slot of the last token

    rows = torch.arange(B, device=device)                  # original row of each current row
    pos = (P - 1 - pad)[:, None]                           # position id of the last token fed
    state = torch.zeros(B, dtype=torch.long, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    out = torch.full((B, N), pad_id, dtype=torch.long, device=device)
    lengths = torch.full((B,), N, dtype=torch.long, device=device)
    limit = None if forced_lengths is None else torch.tensor(forced_lengths, dtype=torch.long, device=device)
    eos = torch.tensor(sorted(eos_ids) or [-1], dtype=torch.long, device=device)

    for i in range(N):
        tok = sample_next(logits, cfg.temperature, cfg.top_p, cfg.greedy, generator)
        tok = torch.where(done, pad_id, tok)
        out.index_put_((rows, torch.full_like(rows, i)), tok)
        stop_now = torch.isin(tok, eos)
        if table is not None:
            state = table[state, tok]
            stop_now |= state == table.shape[0] - 1       # the absorbing "stop complete" state
        if limit is not None:
            stop_now |= limit.index_select(0, rows) == i + 1
        stop_now &= ~done
        lengths.index_put_((rows,), torch.where(stop_now, i + 1, lengths.index_select(0, rows)))
        done |= stop_now
        if i == N - 1:
            break
        if (i + 1) % check_every == 0:                     # the only host syncs
            active = int((~done).sum())
            if active == 0:
                break
            new_b = _bucket(active, len(rows), min_batch)
            if compact and new_b <= len(rows) // 2:
                order = torch.argsort(done.to(torch.int8), stable=True)[:new_b]  # active rows first
                rows, pos, state, done, tok, mask = _compact(cache, order, [rows, pos, state, done, tok, mask])
        pos, slot = pos + 1, slot + 1
        if wants_position:
            kw["cache_position"] = slot
        if device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()
        logits = step_fn(model, tok[:, None], pos, mask, kw)

    return [row[:n] for row, n in zip(out.tolist(), lengths.tolist())]


def _finalise(rows: list[list[int]], tokenizer, stop: str | None, eos_ids) -> list[list[int]]:
    """Host-side pass through the hf backend's truncation rule (decoded-text stop search), so
    both backends share one definition even for tokenizers whose decode is not a concatenation."""
    return rows if tokenizer is None else [truncate_completion(r, tokenizer, stop, sorted(eos_ids)) for r in rows]


def static_generate(policy, prompt_ids: Sequence[Sequence[int]], cfg, seed: int | None = None, *,
                    check_every: int = 16, compact: bool | None = None, min_batch: int = 8,
                    compile: bool | None = None, compile_mode: str = "reduce-overhead",
                    forced_lengths: Sequence[int] | None = None) -> list[list[int]]:
    """Backend "static": completion ids per prompt (contract in the module docstring).

    policy: `.model` (HF causal LM or peft model), `.tokenizer` (None allowed when cfg.stop is
    None), optional `.eos_token_ids`; cfg: sampling.SamplingConfig; seed: same seed, same output.
    Prompts go in chunks of cfg.batch_size, each left-padded to its longest prompt.
    check_every: steps between host checks (early exit, compaction). compact: drop finished rows
    (power-of-two buckets >= min_batch); default CPU only: on a GPU a decode step at batch <= 128
    costs about the same at any batch (it reads all weights) and each new shape is a new compile.
    compile: compile the decode step (default CUDA only); compile_mode "reduce-overhead" (inductor
    + CUDA graphs) or "cudagraphs" (CUDA graphs of the eager kernels, quick to build).
    The cache holds `cache_length(longest prompt + max_new_tokens)` positions (buckets: few distinct shapes).
    forced_lengths: benchmark hook, row b ends after forced_lengths[b] tokens (random weights
    never write the stop text).
    """
    if not prompt_ids:
        return []
    for bad, what in ((any(len(p) == 0 for p in prompt_ids), "prompt_ids: empty prompt"),
                      (cfg.max_new_tokens < 1 or check_every < 1, "max_new_tokens and check_every must be >= 1"),
                      (forced_lengths is not None and len(forced_lengths) != len(prompt_ids),
                       "forced_lengths must have one entry per prompt")):
        if bad:
            raise FastGenError(f"static_generate: {what}")
    model, tok = policy.model, policy.tokenizer
    device = next(model.parameters()).device
    if cfg.stop and tok is None:
        raise FastGenError("static_generate: cfg.stop needs policy.tokenizer")
    vocab = model.get_output_embeddings().weight.shape[0]  # = logits width (may exceed len(tok))
    cache = decode_cache(policy)
    table = cached_stop_table(cache, tok, vocab, cfg.stop, device) if cfg.stop else None
    eos = (policy.eos_token_ids if hasattr(policy, "eos_token_ids")
           else getattr(tok, "eos_token_id", None) if tok is not None else model.config.eos_token_id)
    eos_ids = set() if cfg.ignore_eos else set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
    pad_id = next((i for i in (getattr(tok, "pad_token_id", None), *sorted(eos_ids), 0) if i is not None))
    compact = device.type != "cuda" if compact is None else compact
    use_compile = device.type == "cuda" if compile is None else compile
    step_fn = _decode_step
    if use_compile:  # "cudagraphs": a backend of its own; "reduce-overhead" only means something on CUDA
        step_fn = torch.compile(_decode_step, **({"backend": "cudagraphs"} if compile_mode == "cudagraphs" else
                                                 {"mode": compile_mode if device.type == "cuda" else None}))
    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else int.from_bytes(os.urandom(8), "little") >> 1)
    results = []
    with mode(model, False):
        for start in range(0, len(prompt_ids), cfg.batch_size):
            chunk = prompt_ids[start:start + cfg.batch_size]
            forced = None if forced_lengths is None else list(forced_lengths[start:start + len(chunk)])
            results += _generate_batch(model, chunk, cfg, generator, table, eos_ids, pad_id, check_every,
                                       compact, min_batch, step_fn, forced,
                                       held=cache.static_caches if use_compile else None)
    return _finalise(results, tok, cfg.stop, eos_ids)


# The length budget of a vLLM engine: the longest turn-2 prompt of HumanEval (the longest task set) with the
# Qwen2.5 tokenizer, chat format (data/results/real/tokenizer_facts.json, benchmarks/tokenizer_facts.py; the
# completion format's is 1,718), plus the new tokens, rounded up to a multiple of 256. 2,048 would refuse it.
LONGEST_TURN2_PROMPT = 1763


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
    - model: `policy.serving_path()` (models.Policy): a folder or hub name vLLM can load, never a registry short
      name or a LoRA-only checkpoint (its base model; the merged weights arrive with the first refresh).
    - dtype: the policy's, which must be the device's precision (runtime.precision: never bf16 on a T4).
    - prefix caching on, and reset after every weight refresh (as TRL does): cached attention of the previous
      weights would otherwise be reused for prompts seen before the update.
    - ignore_eos passed to SamplingParams (the released no-stop rollouts)."""

    def __init__(self, policy, max_model_len: int, gpu_memory_utilization: float = 0.3, seed: int = 0,
                 vllm_api=None, hardware=None):
        """vllm_api: what provides `LLM` and `SamplingParams` (the vllm module; a fake in tests);
        hardware: runtime.Hardware (runtime.detect() when None)."""
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        if vllm_api is None:
            try:
                vllm_api = importlib.import_module("vllm")
            except ImportError as e:
                raise ImportError("backend 'vllm' needs vLLM; " + vllm_install_hint(torch.__version__)) from e
        self.params_cls = vllm_api.SamplingParams
        dtype = next(policy.model.parameters()).dtype
        hw = hardware if hardware is not None else runtime.detect()
        if hw.cuda and dtype == torch.bfloat16 and not hw.bf16:
            raise FastGenError(f"backend 'vllm': bf16 weights on {hw.describe()}, which has no bf16 (vLLM refuses "
                               "it); load the policy with dtype 'auto' or 'fp16'")
        self.llm = vllm_api.LLM(model=policy.serving_path(), dtype=str(dtype).removeprefix("torch."),
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
