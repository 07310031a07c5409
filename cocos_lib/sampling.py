"""The sampling contract every generation backend shares; torch-free (it imports only the prompt markers).

What a backend is asked for (`SamplingConfig`), the backend names (`BACKENDS`), and what it
must return: per prompt, the completion ids cut right after the stop string is complete (stop
text included), or after the first EOS (included), or at max_new_tokens (`truncate_completion`).
The backends live in `cocos_lib.generation.dispatch` ("hf" and the `generate` dispatch),
`cocos_lib.generation.static` ("static", "vllm") and `cocos_lib.generation.packed` ("packed"); each imports this
module, none imports another's internals through it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from cocos_lib.prompts import DONE

BACKENDS = ("hf", "static", "vllm", "packed")


@dataclass(frozen=True)
class SamplingConfig:
    """Sampling settings. Paper: temperature 0.9, top_p 1.0, 512 new tokens; eval: greedy.
    stop=None: no stop string (only EOS or max_new_tokens end a row). ignore_eos=True as well
    reproduces the released code's rollouts: every row runs max_new_tokens tokens.
    top_k: 0 = off (the default here: pure temperature / top-p sampling); 50 = what the release
    samples with (its GenerationConfig leaves top_k unset: HF 4.x's default 50). hf backend only."""
    max_new_tokens: int = 512
    temperature: float = 0.9
    top_p: float = 1.0
    greedy: bool = False
    stop: str | None = DONE
    batch_size: int = 64
    ignore_eos: bool = False
    top_k: int = 0

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"SamplingConfig.max_new_tokens={self.max_new_tokens}: must be >= 1")
        if self.batch_size < 1:
            raise ValueError(f"SamplingConfig.batch_size={self.batch_size}: must be >= 1")
        if not self.greedy and not self.temperature > 0:
            raise ValueError(f"SamplingConfig.temperature={self.temperature}: must be > 0 (or greedy=True)")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"SamplingConfig.top_p={self.top_p}: must be in (0, 1]")
        if self.stop == "":
            raise ValueError("SamplingConfig.stop='': use None for no stop string")
        if self.top_k < 0:
            raise ValueError(f"SamplingConfig.top_k={self.top_k}: must be >= 0 (0: off)")


def stop_window(tokenizer, stop: str) -> int:
    """Tokens enough to contain `stop` at the tail: every token decodes to >= 1 char, +2 for
    partial UTF-8 bytes and a token that ends with stop's first chars merged with others."""
    return len(tokenizer(stop, add_special_tokens=False)["input_ids"]) + len(stop) + 2


def truncate_completion(ids: Sequence[int], tokenizer, stop: str | None,
                        eos_ids: Sequence[int] = ()) -> list[int]:
    """Cut `ids` right after the first EOS (kept) or right after the first complete `stop`
    (kept), whichever comes first. The stop is searched in the decoded text; the shortest
    prefix containing it is found by binary search (O(log n) decodes)."""
    ids = [int(i) for i in ids]
    eos = set(eos_ids)
    for j, t in enumerate(ids):
        if t in eos:
            ids = ids[:j + 1]
            break
    if stop is None or stop not in _decode(tokenizer, ids):
        return ids
    lo, hi = 1, len(ids)  # invariant: prefix of length hi contains stop
    while lo < hi:
        mid = (lo + hi) // 2
        if stop in _decode(tokenizer, ids[:mid]):
            hi = mid
        else:
            lo = mid + 1
    return ids[:hi]


def _decode(tokenizer, ids: Sequence[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def decode_batch(tokenizer, rows: list[list[int]]) -> list[str]:
    """Raw decode of many short rows; the Rust backend directly when there is one (fast)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return backend.decode_batch(rows, skip_special_tokens=False)
    return tokenizer.batch_decode(rows, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def token_strings(tokenizer, vocab_size: int) -> list[str]:
    """Text of each token id on its own, for ids 0..vocab_size-1 ("" for ids the tokenizer does not know)."""
    n = min(len(tokenizer), vocab_size)
    return list(decode_batch(tokenizer, [[i] for i in range(n)])) + [""] * (vocab_size - n)


def left_pad(rows: Sequence[Sequence[int]], pad_id: int, device):
    """Left-padded ids [B, P] (P = the longest row) and the number of pad slots per row [B], on `device`."""
    import torch  # lazy: this module stays torch-free at import

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, width - len(r):] = torch.tensor(list(r), dtype=torch.long)
    pad = torch.tensor([width - len(r) for r in rows], dtype=torch.long)
    return ids.to(device), pad.to(device)
