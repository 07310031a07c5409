"""The stop string as a token-level automaton, run on the device by the fast backends (fastgen, packed).

A state s < S = len(stop) says the generated text ends with stop[:s] (the longest such prefix); S says the
stop text is complete. One table lookup per token and row advances every row at once, exact for every
tokenisation of the stop text; the host-side `sampling.truncate_completion` then cuts the rows.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from cocos_lib.sampling import token_strings


def _kmp_failure(stop: str) -> list[int]:
    """KMP failure function: fail[i] = longest proper border of stop[:i+1]."""
    fail, k = [0] * len(stop), 0
    for i in range(1, len(stop)):
        while k and stop[i] != stop[k]:
            k = fail[k - 1]
        k += stop[i] == stop[k]
        fail[i] = k
    return fail


def _feed(state: int, text: str, stop: str, fail: list[int]) -> int:
    """Advance the KMP state (= stop chars matched as a suffix) over `text`; len(stop) = matched."""
    for ch in text:
        while state and ch != stop[state]:
            state = fail[state - 1]
        state += ch == stop[state]
        if state == len(stop):
            return state
    return state


def stop_table(texts: Sequence[str], stop: str) -> torch.Tensor:
    """Token-level automaton for `stop`: table[s, v] = state after token v from state s.

    A state s < S = len(stop) says the generated text ends with stop[:s] (longest such prefix);
    S says the stop text is complete (absorbing). Exact for every tokenisation of the stop text,
    e.g. "[DONE]" as one token, as "[", "DONE", "]" or glued to a newline ("\\n[").
    Only tokens that contain a stop character need the character walk; all others reset to 0.
    """
    S, fail, chars = len(stop), _kmp_failure(stop), set(stop)
    table = torch.zeros(S + 1, len(texts), dtype=torch.long)
    table[S] = S
    for v, text in enumerate(texts):
        if chars.intersection(text):
            for s in range(S):
                table[s, v] = _feed(s, text, stop, fail)
    return table


def cached_stop_table(cache, tokenizer, vocab_size: int, stop: str, device) -> torch.Tensor:
    """stop_table built once per (stop, vocab size, tokenizer size, device), kept in `cache` (a fastgen.DecodeCache: its `stop_tables`)."""
    tables = cache.stop_tables
    key = (stop, vocab_size, len(tokenizer), str(device))
    if key not in tables:
        tables[key] = stop_table(token_strings(tokenizer, vocab_size), stop).to(device)
    return tables[key]
