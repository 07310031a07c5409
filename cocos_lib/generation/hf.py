"""The "hf" backend: HF `generate` (KV cache, left padding) with a stopping criterion that decodes only
the last few tokens of each sequence per step. The entry point for every backend is
`cocos_lib.generation.dispatch.generate`; the contract they share is `cocos_lib.sampling`."""
from __future__ import annotations

import contextlib
from typing import Sequence

import torch
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

from cocos_lib.modes import mode
from cocos_lib.sampling import (SamplingConfig, decode_batch, left_pad, stop_window, token_strings,
                                truncate_completion)


def last_char_table(tokenizer, stop: str, vocab_size: int) -> torch.Tensor | None:
    """lut[v]: token v decodes to text holding stop's last character. The token that completes
    the stop must, so rows whose last token is not in the table skip the tail decode.
    None (no filter) when that character is not ASCII (it could be split across tokens)."""
    if not stop[-1].isascii():
        return None
    n = len(tokenizer)
    lut = torch.ones(max(n, vocab_size), dtype=torch.bool)  # ids beyond the tokenizer: check
    lut[:n] = torch.tensor([stop[-1] in t for t in token_strings(tokenizer, n)])
    return lut


class TailStopCriteria(StoppingCriteria):
    """StoppingCriteria: a row is done once the decoded tail of its *generated* tokens holds
    `stop`. Per step only unfinished rows whose last token can end the stop (see
    last_char_table) have their last `window` tokens decoded."""

    def __init__(self, tokenizer, stop: str, prompt_len: int, lut: torch.Tensor | None = None):
        self.tokenizer, self.stop, self.prompt_len, self.lut = tokenizer, stop, prompt_len, lut
        self.window = stop_window(tokenizer, stop)
        self.done: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores=None, **kwargs) -> torch.BoolTensor:
        if self.done is None:
            self.done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        w = min(self.window, input_ids.shape[1] - self.prompt_len)
        if w <= 0:
            return self.done.clone()
        cand = ~self.done
        if self.lut is not None:
            lut = self.lut
            cand &= lut[input_ids[:, -1].clamp(max=len(lut) - 1)] | (input_ids[:, -1] >= len(lut))
        rows = cand.nonzero().flatten().tolist()
        if rows:
            texts = decode_batch(self.tokenizer, input_ids[rows, -w:].tolist())
            for r, text in zip(rows, texts):
                if self.stop in text:
                    self.done[r] = True
        return self.done.clone()


def hf_generation_config(cfg: SamplingConfig, eos: Sequence[int], pad_token_id: int | None):
    """The GenerationConfig of one hf_generate call. Sampling: softmax(logits / T) with top-p
    and top_k=cfg.top_k (0: off; unset, HF 4.x would fill in its default top_k 50). Greedy: no
    sampling flag at all, so transformers' validate() finds nothing to warn about."""
    sampling = {} if cfg.greedy else dict(temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k)
    return GenerationConfig(max_new_tokens=cfg.max_new_tokens, do_sample=not cfg.greedy, num_beams=1,
                            use_cache=True, eos_token_id=list(eos) or None, pad_token_id=pad_token_id,
                            bos_token_id=None, **sampling)


def hf_generate(policy, prompt_ids: list[list[int]], cfg: SamplingConfig,
                seed: int | None = None) -> list[list[int]]:
    """The "hf" backend: micro-batches of cfg.batch_size prompts (sorted by length to save
    padding), left padded, HF generate with KV cache. Pure temperature / top-p sampling: the
    checkpoint's own generation_config (e.g. Llama-3.2's temperature 0.6, top_p 0.9, HF's
    default top_k 50) is swapped out for the call. With a seed, sampling runs in a forked RNG
    state seeded with it, so the caller's global RNG is untouched."""
    tok, model = policy.tokenizer, policy.model
    eos = [] if cfg.ignore_eos else policy.eos_token_ids
    gen_cfg = hf_generation_config(cfg, eos, tok.pad_token_id)
    head = model.get_output_embeddings()
    lut = last_char_table(tok, cfg.stop, head.weight.shape[0] if head is not None else 0) if cfg.stop else None
    lut = lut.to(policy.device) if lut is not None else None
    order = sorted(range(len(prompt_ids)), key=lambda i: -len(prompt_ids[i]))
    out: list[list[int] | None] = [None] * len(prompt_ids)
    devices = [policy.device] if policy.device.type == "cuda" else []
    rng = torch.random.fork_rng(devices=devices) if seed is not None else contextlib.nullcontext()
    hf_model = model.get_base_model() if hasattr(model, "get_base_model") else model
    saved_gen = hf_model.generation_config
    hf_model.generation_config = GenerationConfig(eos_token_id=eos or None, pad_token_id=tok.pad_token_id)
    try:
        with mode(model, False), rng, torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            for s in range(0, len(order), cfg.batch_size):
                idx = order[s:s + cfg.batch_size]
                batch = hf_inputs([prompt_ids[i] for i in idx], tok.pad_token_id, policy.device)
                width = batch["input_ids"].shape[1]
                crit = StoppingCriteriaList([TailStopCriteria(tok, cfg.stop, width, lut)] if cfg.stop else [])
                seqs = model.generate(**batch, generation_config=gen_cfg, stopping_criteria=crit)
                for i, row in zip(idx, seqs[:, width:].tolist()):
                    out[i] = truncate_completion(row, tok, cfg.stop, eos)
    finally:
        hf_model.generation_config = saved_gen
    return out  # type: ignore[return-value]


def hf_inputs(rows: list[list[int]], pad_id: int, device) -> dict[str, torch.Tensor]:
    """HF generate's inputs: `input_ids` [B, P] (sampling.left_pad) and their `attention_mask` (0 on padding)."""
    if min(len(r) for r in rows) == 0:
        raise ValueError("generate: an empty prompt (0 tokens) cannot be continued")
    ids, pad = left_pad(rows, pad_id, device)
    mask = (torch.arange(ids.shape[1], device=ids.device)[None, :] >= pad[:, None]).long()
    return {"input_ids": ids, "attention_mask": mask}
