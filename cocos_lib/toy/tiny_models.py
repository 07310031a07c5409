"""Tiny causal LMs for tests and the toy world, built offline: a byte-level BPE tokenizer trained on the fly and a
random-init Llama or Qwen2 saved with `save_pretrained` (no network, no downloads; `models.load_policy` loads them)."""
from __future__ import annotations

import os
from typing import Sequence

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast, Qwen2Config

from cocos_lib.prompts import MARKERS

_TINY_CORPUS = [
    "You are an expert Python programmer, and here is your task: Write a function to add two "
    "numbers. Your code should pass these tests:\n\nassert add(1, 2) == 3\nassert add(0, 0) == 0\n",
    "[BEGIN]\ndef add(a, b):\n    return a + b\n[DONE]\n\n",
    "[CORRECT]\ndef reverse_string(s):\n    return s[::-1]\n[DONE]\n",
    "def count_vowels(text):\n    return sum(1 for c in text if c in 'aeiou')\n",
    "def max_of_list(xs):\n    best = xs[0]\n    for x in xs:\n        if x > best:\n            best = x\n    return best\n",
    "def is_even(n):\n    return n % 2 == 0\n\nassert is_even(4) == True\nassert is_even(7) == False\n",
    "There might be an error in the code above because of lack of understanding of the question. "
    "Please correct the error, if any, and rewrite the solution. Only output the final correct Python program!",
    "import math\nfrom typing import List\n\ndef sum_list(lst: List[int]) -> int:\n    total = 0\n"
    "    for i in range(len(lst)):\n        total += lst[i]\n    return total\n",
    "def first_word(s):\n    words = s.split(' ')\n    return words[0] if words else ''\n",
    "while True:\n    try:\n        x = int(input())\n    except ValueError:\n        break\n    print(x * 2, [x, x], {'k': x})\n",
]


def train_tiny_tokenizer(texts: Sequence[str] | None = None, vocab_size: int = 384,
                         markers_as_tokens: bool = True, eos_token: str = "<|endoftext|>"):
    """A byte-level BPE tokenizer trained on the fly (offline). Markers [BEGIN] [DONE] [CORRECT]
    become single (non-special, so decoded) tokens when markers_as_tokens, else they are
    multi-token strings as in real BPE vocabularies. No pad token (load_policy sets pad = eos)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[eos_token], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts or _TINY_CORPUS) * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos_token,
                                   clean_up_tokenization_spaces=False)
    if markers_as_tokens:
        fast.add_tokens(list(MARKERS))
    return fast


def make_tiny_policy(out_dir: str | os.PathLike, arch: str = "llama", vocab_texts: Sequence[str] | None = None,
                     seed: int = 0, markers_as_tokens: bool = True, vocab_size: int = 384,
                     **sizes) -> str:
    """Write a random-init tiny causal LM + its tokenizer with save_pretrained; return out_dir.

    arch: "llama" or "qwen2". sizes override hidden_size=64, intermediate_size=128,
    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    max_position_embeddings=1024 (and any other config field, e.g. initializer_range).
    """
    configs = {"llama": LlamaConfig, "qwen2": Qwen2Config}
    if arch not in configs:
        raise ValueError(f"arch '{arch}': expected one of {sorted(configs)}")
    tok = train_tiny_tokenizer(vocab_texts, vocab_size=vocab_size, markers_as_tokens=markers_as_tokens)
    dims = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True)
    dims.update(sizes)
    config = configs[arch](vocab_size=len(tok), bos_token_id=None, eos_token_id=tok.eos_token_id,
                           pad_token_id=None, **dims)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.bos_token_id = None
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return str(out_dir)
