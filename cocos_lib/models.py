"""Policies: loading any HF causal LM (hub name, local dir, LoRA), and tiny test models.

The policy pi_theta of the paper is a `Policy`: a causal LM plus its tokenizer, set up for
batched generation (left padding, a pad token). The reference policy pi_ref used by the KL
term beta * KL(pi_theta || pi_ref) is either a frozen copy (`frozen_reference`) or, for a
LoRA policy, the same weights with the adapter switched off (`Policy.reference()`), so no
second copy of the model is held in memory.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from cocos_lib import hardware, registry_models
from cocos_lib.release import authors as release
from cocos_lib.toy import warmstart as toy  # stdlib-only at import (toy: torch inside its functions)
from cocos_lib.hub import hub_offline, hub_reachable  # stdlib-only helpers, shared with cocos_lib.tasks

from cocos_lib.generation.static import DecodeCache
from cocos_lib.toy.warmstart import TINY_WARMSTART

# huggingface_hub, transformers (~0.6 s over torch) and peft (~2 s) load inside the functions that use them: config and
# evaluate import this module for resolve_model, which needs neither transformers nor peft for a cached or local model,
# and huggingface_hub reads HF_HOME / HF_HUB_* into its constants when first imported, not when this module is.

_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16,
           "float16": torch.float16, "half": torch.float16, "bf16": torch.bfloat16,
           "bfloat16": torch.bfloat16}


class ModelNotFoundError(FileNotFoundError):
    """A model name or path that resolves to nothing loadable (one-line message)."""


@dataclass
class LoraSpec:
    """LoRA adapter settings (peft): rank r, scaling alpha (update = alpha/r * B A), dropout.

    dropout defaults to 0: an RL step compares the same network three times (pi_old, pi_theta,
    pi_ref); rl_step also switches dropout off for its duration (`modes.dropout_off`), as TRL does."""
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: Sequence[str] | str = ("q_proj", "k_proj", "v_proj", "o_proj",
                                           "gate_proj", "up_proj", "down_proj")


@dataclass
class Policy:
    """pi_theta: a causal LM (possibly a peft model) and its tokenizer (left padding, pad set)."""
    model: Any
    tokenizer: Any
    name: str
    decode_cache: DecodeCache = field(default_factory=DecodeCache, repr=False, compare=False)  # fastgen's, per policy
    base: str | None = None  # a LoRA policy's base model as named by the user (saved into adapter_config.json)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def is_lora(self) -> bool:
        return hasattr(self.model, "disable_adapter") and hasattr(self.model, "peft_config")

    @property
    def eos_token_ids(self) -> list[int]:
        """Every id that ends a sequence: the tokenizer's EOS and the generation config's."""
        ids = {self.tokenizer.eos_token_id}
        gen = getattr(self.model, "generation_config", None)
        extra = getattr(gen, "eos_token_id", None) if gen is not None else None
        ids.update(extra if isinstance(extra, (list, tuple)) else [extra])
        return sorted(i for i in ids if i is not None)

    @contextlib.contextmanager
    def reference(self):
        """Context in which `self.model` computes pi_ref: LoRA adapter disabled; else a no-op. Every submodule's
        train/eval flag is restored on exit: peft >= 0.22's disable_adapter resets them (it turned the dropout
        that `modes.dropout_off` had switched off back on for the rest of an RL step)."""
        if not self.is_lora:
            yield
            return
        flags = [(m, m.training) for m in self.model.modules()]
        try:
            with self.model.disable_adapter():
                yield
        finally:
            for m, training in flags:
                m.training = training

    def save(self, out_dir: str | os.PathLike) -> str:
        """save_pretrained of model (or LoRA adapter) and tokenizer; returns out_dir."""
        self.model.save_pretrained(out_dir)
        self.tokenizer.save_pretrained(out_dir)
        adapter = Path(out_dir, "adapter_config.json")
        if self.is_lora and self.base in registry_models.REGISTRY and adapter.is_file():
            # peft writes the base's resolved folder (this machine's cache); the registry name resolves anywhere
            config = json.loads(adapter.read_text())
            config["base_model_name_or_path"] = self.base
            adapter.write_text(json.dumps(config, indent=2))
        return str(out_dir)


def resolve_dtype(dtype: str | torch.dtype, device: str | torch.device,
                  cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> torch.dtype:
    """"auto": bf16 on GPUs that support it natively (compute >= 8.0), fp16 on older GPUs (a T4: never
    emulated bf16; `hardware.precision`, the one decision); on a CPU bf16 where it has native bf16 matmuls
    (AMX-BF16 or AVX512-BF16, `hardware.cpu_bf16_flags`), else fp32 (and fp32 on MPS)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype != "auto":
        if dtype not in _DTYPES:
            raise ValueError(f"dtype '{dtype}': expected 'auto' or one of {sorted(_DTYPES)}")
        return _DTYPES[dtype]
    kind = torch.device(device).type
    if kind == "cuda":
        hw = hardware.detect(torch, torch.device(device).index or 0)
        return _DTYPES[hardware.precision(hw).dtype]
    if kind == "cpu" and hardware.cpu_bf16_flags(cpuinfo):
        return torch.bfloat16
    return torch.float32


def describe_dtype(dtype: str | torch.dtype, device: str | torch.device,
                   cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> str:
    """One line saying which dtype `dtype` resolves to on `device`, and why (printed by train/evaluate)."""
    dt = resolve_dtype(dtype, device, cpuinfo)
    name = str(dt).removeprefix("torch.")
    if dtype != "auto":
        return f"dtype {name} (asked for)"
    kind = torch.device(device).type
    if kind == "cpu":
        flags = hardware.cpu_bf16_flags(cpuinfo)
        why = f"the CPU has {', '.join(flags)}" if flags else "the CPU has no native bf16 (no amx_bf16/avx512_bf16)"
        return f"dtype auto -> {name} ({why})"
    return f"dtype auto -> {name} (on {kind})"


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_model(name_or_path: str | os.PathLike) -> str:
    """Return a loadable local dir or hub name, or raise ModelNotFoundError in one line.

    Cheap (reads config.json only), so callers can fail before any heavy work.
    "tiny-warmstart" resolves to the shipped toy checkpoint (cocos_lib.toy.warmstart.warmstart_path()).
    A registry short name (registry_models.REGISTRY, e.g. "qwen2.5-coder-0.5b-instruct") resolves
    to its converted folder in the cocos cache, or fails saying the command that fetches it.
    A hub name resolves to its local HF-cache snapshot when complete (no network at all);
    otherwise, with HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE set or the hub unreachable (one quick
    probe, no retries), it fails at once instead of after huggingface_hub's retries.
    """
    name = str(name_or_path)
    if name == TINY_WARMSTART:
        name = str(toy.warmstart_path())
        if not Path(name).is_dir():
            raise ModelNotFoundError(f"model 'tiny-warmstart': no checkpoint at {name} "
                                     "(build it: python -m cocos_lib.toy.warmstart build-warmstart)")
    if name in registry_models.REGISTRY:
        folder = registry_models.fetched_dir(name)
        if folder is None:
            raise ModelNotFoundError(registry_models.not_fetched_message(name))
        return str(folder)
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir() or not ((path / "config.json").is_file()
                                     or (path / "adapter_config.json").is_file()):
            raise ModelNotFoundError(f"model '{name}': not a model directory "
                                     "(no config.json or adapter_config.json)")
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep + os.sep in name:
        raise ModelNotFoundError(f"model '{name}': no such local directory")
    return _resolve_hub(name)


_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
            "pytorch_model.bin.index.json", "adapter_config.json")
_FIX = "connect to the internet, or pass a local model directory"


def cached_snapshot(name: str) -> str | None:
    """The local HF-cache snapshot dir of hub model `name` if it holds config (or adapter),
    tokenizer and every weight file (shards of an index included); else None. No network."""
    from huggingface_hub import try_to_load_from_cache  # lazy: huggingface_hub (see the note at the imports)
    def cached(f):
        hit = try_to_load_from_cache(name, f)
        return hit if isinstance(hit, str) else None
    config = cached("config.json") or cached("adapter_config.json")
    if config is None:
        return None
    snap = Path(config).parent
    weights = [f for f in _WEIGHTS if (snap / f).is_file()]
    if not weights:
        return None
    if weights[0].endswith(".index.json"):
        shards = set(json.loads((snap / weights[0]).read_text()).get("weight_map", {}).values())
        if not all((snap / f).is_file() for f in shards):
            return None
    if not weights[0] == "adapter_config.json" and not any(
            (snap / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        return None
    return str(snap)


def _resolve_hub(name: str) -> str:
    """Hub name -> the cached snapshot dir (no network), else the name once the hub answers a
    quick probe and has its config; fails fast with one line when offline or unreachable."""
    snap = cached_snapshot(name)
    if snap is not None:
        return snap
    if hub_offline():
        raise ModelNotFoundError(f"model '{name}': not in the local Hugging Face cache and HF_HUB_OFFLINE/"
                                 f"TRANSFORMERS_OFFLINE is set (unset it and {_FIX})")
    if not hub_reachable():
        raise ModelNotFoundError(f"model '{name}': not in the local Hugging Face cache and the hub is "
                                 f"unreachable ({_FIX})")
    from transformers import AutoConfig  # lazy: transformers (see the note at the imports)
    try:
        AutoConfig.from_pretrained(name)
    except Exception as e:  # typo, gated, ...: one line naming the model
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelNotFoundError(f"model '{name}': not found locally or on the hub ({msg})") from None
    return name


def _from_pretrained(cls, path: str, dtype: torch.dtype):
    try:  # transformers >= 4.56 names it `dtype`, older versions `torch_dtype`
        return cls.from_pretrained(path, dtype=dtype)
    except TypeError:
        return cls.from_pretrained(path, torch_dtype=dtype)


# The release's pad token per model family (docs/paper.md §8; the table is release.PAD_TOKENS): Llama-3.2's is
# not its EOS, deepseek-coder's and Qwen2.5's are. pad_token="released" takes the first one the vocabulary holds.
RELEASED_PAD_TOKENS = tuple(release.PAD_TOKENS[family][0] for family in ("llama", "deepseek", "qwen"))


def setup_tokenizer(tokenizer, pad_token: str = "auto") -> Any:
    """Left padding, and a pad token. pad_token "auto": the existing one (Qwen2.5) else EOS
    (Llama-3.2, ...); "released": the release's per family (RELEASED_PAD_TOKENS); else that token.

    Never adds a new token (that would silently resize the embeddings).
    """
    tokenizer.padding_side = "left"
    if pad_token == "released":
        vocab = tokenizer.get_vocab()
        pad_token = next((t for t in RELEASED_PAD_TOKENS if t in vocab), None)
        if pad_token is None:
            raise ValueError(f"tokenizer '{tokenizer.name_or_path}': pad_token='released' needs one of "
                             f"{', '.join(RELEASED_PAD_TOKENS)} in the vocabulary")
    if pad_token != "auto":
        if pad_token not in tokenizer.get_vocab():
            raise ValueError(f"tokenizer '{tokenizer.name_or_path}': pad_token {pad_token!r} is not in the vocabulary")
        tokenizer.pad_token = pad_token
    elif tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"tokenizer '{tokenizer.name_or_path}': has neither pad nor eos token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_policy(name_or_path: str | os.PathLike, dtype: str | torch.dtype = "auto",
                device: str | torch.device | None = None, lora: LoraSpec | None = None,
                gradient_checkpointing: bool = False, pad_token: str = "auto") -> Policy:
    """Load pi_theta from a hub name, a local dir (model or saved LoRA adapter) or "tiny-warmstart".

    lora: wrap in a fresh trainable LoRA adapter (peft). A dir holding a saved adapter is
    loaded on its base model with the adapter trainable. pad_token: see setup_tokenizer.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer  # lazy: transformers (see the note at the imports)
    name = str(name_or_path)
    path = resolve_model(name)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    adapter = Path(path, "adapter_config.json")
    base = name if lora is not None else None
    if adapter.is_file() and not Path(path, "config.json").is_file():
        if lora is not None:
            raise ValueError(f"model '{name}': is a saved LoRA adapter; load it without lora=")
        from peft import PeftModel  # lazy: peft (see the note at the imports)
        base = json.loads(adapter.read_text())["base_model_name_or_path"]
        model = _from_pretrained(AutoModelForCausalLM, resolve_model(base), dt)
        model = PeftModel.from_pretrained(model, path, is_trainable=True)
        tok_src = path if Path(path, "tokenizer_config.json").is_file() else resolve_model(base)
    else:
        model = _from_pretrained(AutoModelForCausalLM, path, dt)
        tok_src = path
    tokenizer = setup_tokenizer(AutoTokenizer.from_pretrained(tok_src), pad_token)
    model.config.pad_token_id = tokenizer.pad_token_id
    # A saved config.json holds pad_token_id (set just above), and from_pretrained turns it into the
    # input embedding's padding_idx: that row would get no gradient from its lookups, so a resumed run
    # would train other parameters than the fresh one (pad = EOS is a real input in no-stop mode).
    # Pad positions are masked out of every loss anyway: no policy keeps a padding_idx.
    model.get_input_embeddings().padding_idx = None
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.to(dev)
    if lora is not None:
        from peft import LoraConfig, get_peft_model  # lazy: peft (see the note at the imports)
        tm = lora.target_modules if isinstance(lora.target_modules, str) else list(lora.target_modules)
        model = get_peft_model(model, LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                                 target_modules=tm, task_type="CAUSAL_LM"))
    if gradient_checkpointing:
        kw = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kw)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kw)
        if lora is not None or adapter.is_file():
            model.enable_input_require_grads()
    return Policy(model=model, tokenizer=tokenizer, name=name, base=base)


def frozen_reference(policy: Policy) -> torch.nn.Module | None:
    """pi_ref as a frozen deep copy (eval, no grad); None for LoRA (use policy.reference())."""
    if policy.is_lora:
        return None
    ref = copy.deepcopy(policy.model).eval()
    ref.requires_grad_(False)
    return ref
