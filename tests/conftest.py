"""Shared fixtures: tiny random-init policies built offline (no network, no downloads)."""
import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_policy_dir(tmp_path_factory):
    """A random-init 2-layer Llama (hidden 64) + byte-level BPE tokenizer trained on the fly,
    markers [BEGIN] [DONE] [CORRECT] as single tokens, no pad token; saved with save_pretrained."""
    from cocos_lib.toy.tiny_models import make_tiny_policy
    return make_tiny_policy(tmp_path_factory.mktemp("tiny_policy"), arch="llama", seed=0)


@pytest.fixture(scope="session")
def tiny_policy_dir_multitoken(tmp_path_factory):
    """Same as tiny_policy_dir but a Qwen2 architecture whose tokenizer splits the markers
    into several tokens (as real BPE vocabularies do)."""
    from cocos_lib.toy.tiny_models import make_tiny_policy
    return make_tiny_policy(tmp_path_factory.mktemp("tiny_policy_mt"), arch="qwen2", seed=1,
                            markers_as_tokens=False)


@pytest.fixture(scope="session")
def executor():
    """One sandboxed Executor(workers=2) shared by the test files (closed at the end)."""
    from cocos_lib.executor import Executor
    with Executor(workers=2) as ex:
        yield ex


@pytest.fixture(scope="session")
def tiny_policy(tiny_policy_dir):
    """The tiny policy loaded through load_policy (fp32, CPU). Shared: do not train it in place."""
    import torch
    from cocos_lib.models import load_policy
    torch.set_num_threads(1)
    return load_policy(tiny_policy_dir, dtype="fp32", device="cpu")


@pytest.fixture(scope="session")
def tiny_chat_policy_dir(tmp_path_factory):
    """A random-init tiny Qwen2 (tests/tiny_gguf.py sizes) whose tokenizer has Qwen's special tokens
    (<|im_start|>, <|im_end|> = EOS, <|endoftext|> = pad) and a chat template; save_pretrained."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    from tiny_gguf import CHAT_TEMPLATE, DIMS, tiny_tokenizer
    out = tmp_path_factory.mktemp("chat_policy")
    tok = tiny_tokenizer()
    tok.chat_template = CHAT_TEMPLATE
    tok.eos_token, tok.pad_token = "<|im_end|>", "<|endoftext|>"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(Qwen2Config(vocab_size=len(tok), eos_token_id=tok.eos_token_id,
                                                             pad_token_id=tok.pad_token_id, **DIMS))
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)
