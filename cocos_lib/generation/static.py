"""Fast rollout backend "static": a static-KV-cache decode loop (the vLLM one: cocos_lib.generation.vllm).

Generation dominates CoCoS's cost (128 two-turn rollouts per update, up to 512 new tokens a
turn). HF `generate` grows a dynamic cache and syncs with the host every step. `static_generate`
pre-allocates one `StaticCache` of batch x (prompt + max_new_tokens) slots, runs the prompt once
(eager prefill), then a one-token decode step compiled with torch.compile(mode="reduce-overhead")
(CUDA graphs) on CUDA, eager on CPU. It samples on the device with a seeded torch.Generator,
detects EOS and the stop string on the device (a token-level automaton, exact for any
tokenisation of the stop text: `cocos_lib.generation.stop_automaton`) with per-row finished flags, and syncs with the
host only every `check_every` steps: to end once all rows are done and (CPU default) to compact
the batch so finished rows stop costing.

Output contract (cocos_lib.sampling, as the "hf" backend in cocos_lib.generation.dispatch): completion ids per prompt, cut
right after the stop string (included), or after EOS (included), or at max_new_tokens.
"""
from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from cocos_lib.modes import mode
from cocos_lib.sampling import left_pad, truncate_completion
from cocos_lib.generation.stop_automaton import cached_stop_table


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
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(base.forward).parameters
    return ("cache" if "cache" in params else "past_key_values"), "cache_position" in params


def release_static_cache(policy) -> None:
    """Free the KV caches the compiled path keeps for `policy` (e.g. before a big backward)."""
    decode_cache(policy).release_static()


def _static_cache_fresh(model, length: int):
    """A new StaticCache (lazily allocated on the first forward)."""
    import transformers  # lazy: transformers (models imports this module and stays transformers-free: see the note there)
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
