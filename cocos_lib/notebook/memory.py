"""Peak GPU memory of a CoCoS run, estimated from the model's shapes (no GPU, no download).

One update has three peaks:
  generation:  persistent + KV caches + prefill/sampling temporaries
               "static" backend: the turn-1 and the turn-2 cache, both held in Policy.decode_cache while turn 2
               generates, each gen rows x fastgen.cache_length(longest prompt + new tokens) (bucketed);
               "hf" backend: one cache growing by concatenation, + one layer's copy while it grows
  training:    persistent + gradients + activations of one micro-batch + its logits (see `logits_bytes`)
  optimizer:   persistent + gradients + the foreach AdamW temporary (one fp32 copy of every trainable weight;
               none with fused=True, what optim.make_optimizer asks for on CUDA)
  persistent = weights + fp32 master copy (if any) + Adam states (m, v) + reference policy pi_ref
               (a frozen copy for full fine-tuning; nothing with LoRA: adapter disabled) + overhead
The static caches are released before the RL step's backward (rl.rl_step), so they are in no training peak.
The estimate is an engineering model of what the code allocates, not a measurement: tests/test_memory.py checks
its formulas against the live tensor bytes of the same code on small shapes (cocos_lib.notebook.live_bytes.LiveBytes on
the CPU; the formula carries to the GPU, the constants of the CUDA context and allocator do not): the CUDA
context and allocator slack are one constant `overhead_gb`. `benchmarks/rollout_bench.py --gpu` measures the
real peaks of the same configs to compare.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from cocos_lib.config import profile_settings

# torch-free at import: notebook.runtime plans a GPU profile with it before any model loads, and notebook.estimates and
# report.results (the README's tables) read it; torch, transformers and generation.static load where they are used.

GiB = 1024 ** 3
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}

# Published config sizes of the paper's / profiles' models (config.json on the hub), so that a
# config can be built offline: AutoModelForCausalLM.from_config(arch_config(name)).
ARCHS: dict[str, dict] = {
    "Qwen/Qwen2.5-0.5B": dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                              num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                              tie_word_embeddings=True, max_position_embeddings=32768, rope_theta=1e6,
                              rms_norm_eps=1e-6),
    "Qwen/Qwen2.5-1.5B": dict(model_type="qwen2", hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                              num_attention_heads=12, num_key_value_heads=2, vocab_size=151936,
                              tie_word_embeddings=True, max_position_embeddings=131072, rope_theta=1e6,
                              rms_norm_eps=1e-6),
    "meta-llama/Llama-3.2-1B": dict(model_type="llama", hidden_size=2048, intermediate_size=8192,
                                    num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                                    head_dim=64, vocab_size=128256, tie_word_embeddings=True,
                                    max_position_embeddings=131072, rope_theta=5e5, rms_norm_eps=1e-5),
    "deepseek-ai/deepseek-coder-1.3b-base": dict(model_type="llama", hidden_size=2048, intermediate_size=5504,
                                                 num_hidden_layers=24, num_attention_heads=16,
                                                 num_key_value_heads=16, vocab_size=32256,
                                                 tie_word_embeddings=False, max_position_embeddings=16384,
                                                 rope_theta=1e5, rms_norm_eps=1e-6),
}


class MemoryConfigError(ValueError):
    """Unknown architecture, dtype or profile."""


def arch_config(name: str, **overrides):
    """HF config for one of ARCHS (sizes only: weights come from from_config, i.e. random)."""
    from transformers import AutoConfig  # lazy: transformers (see the note at the imports)
    if name not in ARCHS:
        raise MemoryConfigError(f"arch '{name}': expected one of {sorted(ARCHS)}")
    sizes = dict(ARCHS[name], **overrides)
    return AutoConfig.for_model(sizes.pop("model_type"), **sizes)


@dataclass(frozen=True)
class Shape:
    """The sizes memory depends on. params: exact count (embeddings, lm_head if untied, biases)."""
    params: int
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int

    @classmethod
    def from_config(cls, config) -> "Shape":
        """Counts parameters by building the model on the meta device (no memory used)."""
        import torch  # lazy: torch (see the note at the imports)
        from transformers import AutoModelForCausalLM  # lazy: transformers (see the note at the imports)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        params = sum(p.numel() for p in model.parameters())  # tied weights counted once
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        return cls(params, config.num_hidden_layers, config.hidden_size, config.intermediate_size,
                   config.num_attention_heads, config.num_key_value_heads, head_dim, config.vocab_size)


def lora_params(s: Shape, r: int) -> int:
    """Trainable LoRA parameters, r x (d_in + d_out) per adapted linear, all 7 projections."""
    q_out, kv_out = s.heads * s.head_dim, s.kv_heads * s.head_dim
    dims = [(s.hidden, q_out), (s.hidden, kv_out), (s.hidden, kv_out), (q_out, s.hidden),
            (s.hidden, s.intermediate), (s.hidden, s.intermediate), (s.intermediate, s.hidden)]
    return s.layers * sum(r * (a + b) for a, b in dims)


@dataclass(frozen=True)
class MemoryConfig:
    """One run's memory-relevant knobs. dtype: the weights' compute dtype; master_fp32: an fp32
    copy of the trainable weights with fp32 Adam states and gradients (cocos_lib/optim.py, what
    train() does for bf16/fp16 full fine-tuning); lora_r: 0 = full fine-tuning (LoRA adapters
    are fp32, peft's default); reference: "copy" | "adapter" (LoRA disabled) | "none"."""
    dtype: str = "bf16"
    master_fp32: bool = False
    lora_r: int = 0
    reference: str = "copy"
    gradient_checkpointing: bool = True
    micro_batch: int = 8           # rows per forward/backward
    train_seq: int = 812           # tokens per row (prompt + completion)
    logit_tokens: int = 512        # logits span: from the earliest completion in a micro-batch to its longest row's end
    gen_batch: int = 128
    prompt_len: int = 300          # longest turn-2 prompt of a generation batch (turn 2 holds turn 1's answer)
    new_tokens: int = 512
    turn1_prompt_len: int = 300    # longest turn-1 prompt of a generation batch
    turn1_batch: int = 128         # rows generated at turn 1 (prompts_per_update when the first turn is shared)
    backend: str = "hf"            # rollout backend: "hf" (growing cache) | "static" (bucketed caches, both turns)
    fused_adamw: bool = True       # optim.make_optimizer on CUDA: no foreach temporary at the step
    overhead_gb: float = 1.0       # CUDA context + allocator slack

    def __post_init__(self):
        if self.dtype not in DTYPE_BYTES:
            raise MemoryConfigError(f"MemoryConfig.dtype='{self.dtype}': expected one of {sorted(DTYPE_BYTES)}")
        if self.reference not in ("copy", "adapter", "none"):
            raise MemoryConfigError(f"MemoryConfig.reference='{self.reference}': expected copy|adapter|none")
        if self.reference == "adapter" and not self.lora_r:
            raise MemoryConfigError("MemoryConfig.reference='adapter' needs lora_r > 0")
        if self.backend not in ("hf", "static"):
            raise MemoryConfigError(f"MemoryConfig.backend='{self.backend}': expected hf|static")


def kv_cache_bytes(s: Shape, batch: int, tokens: int, dtype: str) -> int:
    """K and V of every layer: 2 x layers x kv_heads x head_dim x bytes per token."""
    return 2 * s.layers * s.kv_heads * s.head_dim * DTYPE_BYTES[dtype] * batch * tokens


def activation_bytes(s: Shape, tokens: int, dtype: str, checkpointing: bool) -> int:
    """Saved-for-backward bytes of `tokens` tokens through all layers.

    Per token and layer (compute dtype): layer input, norm output, q, k, v, attention output,
    residual, norm output, gate, up, act(gate), act(gate)*up = 7h + 2 kv_dim + 4 I, plus the two
    RMSNorms' fp32 input copies (2 x 4h bytes). Flash/SDPA attention stores no L x L scores.
    Measured with LiveBytes on this code (tests/test_memory_measured.py): within 10% for 2 and 4 layers without
    checkpointing. Checkpointing keeps only each layer's input (h per token) and recomputes one layer at a time
    (not checked against a measurement: at the small shapes the peak then moves to the weights' gradients).
    """
    b = DTYPE_BYTES[dtype]
    per_layer = b * (7 * s.hidden + 2 * s.kv_heads * s.head_dim + 4 * s.intermediate) + 8 * s.hidden
    if checkpointing:
        return tokens * (s.layers * b * s.hidden + per_layer)
    return tokens * s.layers * per_layer


def logits_bytes(s: Shape, micro: int, span: int, dtype: str) -> int:
    """The logits of one training micro-batch at their peak, the start of its backward (measured: LiveBytes).

    Alive then: the logits logprobs.token_logprobs saves ([micro, span, V], compute dtype), the gradient of their
    [:, :-1] slice that _LogSoftmaxPick.backward returns, and the full-size gradient autograd's slice backward
    builds from it: 3 x micro x span x V; plus about one fp32 row [span, V] of the per-row softmax. span: from
    the earliest completion in the micro-batch to its longest row's end (mixed prompt lengths: up to ~1,000 with
    512 new tokens). The fused path's reference logits ([micro, span, V] + fp32 rows, no grad) are alive
    between the forward and the backward, next to the policy's: 2 x micro x span x V, below this peak."""
    b = DTYPE_BYTES[dtype]
    return 3 * micro * span * s.vocab * b + span * s.vocab * 4


def generation_cache_bytes(s: Shape, c: MemoryConfig) -> int:
    """KV cache bytes at the generation peak: "static": the turn-1 and turn-2 caches, bucketed lengths (both held
    by the DecodeCache during turn 2); "hf": the turn-2 cache, + one layer's copy while torch.cat grows it."""
    from cocos_lib.generation.static import cache_length  # lazy: torch (see the note at the imports)
    if c.backend == "static":
        return (kv_cache_bytes(s, c.gen_batch, cache_length(c.prompt_len + c.new_tokens), c.dtype)
                + kv_cache_bytes(s, min(c.turn1_batch, c.gen_batch), cache_length(c.turn1_prompt_len + c.new_tokens),
                                 c.dtype))
    grown = kv_cache_bytes(s, c.gen_batch, c.prompt_len + c.new_tokens, c.dtype)
    return grown + grown // s.layers


def estimate(s: Shape, c: MemoryConfig) -> dict[str, float]:
    """Bytes of each part and the two peaks, in GiB (keys as in the module docstring)."""
    b = DTYPE_BYTES[c.dtype]
    trainable = lora_params(s, c.lora_r) if c.lora_r else s.params
    tb = 4 if (c.lora_r or c.master_fp32) else b          # trainable weights' (master) dtype bytes
    parts = {
        "weights": s.params * b + (trainable * 4 if c.lora_r else 0),
        "master": trainable * 4 if (c.master_fp32 and not c.lora_r and b != 4) else 0,
        "optimizer": 2 * trainable * tb,                   # Adam m and v
        "reference": s.params * b if c.reference == "copy" else 0,
        "overhead": c.overhead_gb * GiB,
        "grads": trainable * tb,
        "activations": activation_bytes(s, c.micro_batch * c.train_seq, c.dtype, c.gradient_checkpointing),
        "logits": logits_bytes(s, c.micro_batch, c.logit_tokens, c.dtype),
        "optimizer_temp": 0 if c.fused_adamw else trainable * tb,   # foreach AdamW: sqrt(v) for every weight
        "kv_cache": generation_cache_bytes(s, c),
        # prefill of one layer (MLP temporaries dominate) + last-position logits and fp32 sampling copies
        "prefill": c.gen_batch * c.prompt_len * (3 * s.intermediate + 4 * s.hidden) * b
                   + c.gen_batch * s.vocab * (b + 3 * 4),
    }
    persistent = sum(parts[k] for k in ("weights", "master", "optimizer", "reference", "overhead"))
    out = {k: v / GiB for k, v in parts.items()}
    out["persistent"] = persistent / GiB
    out["peak_train"] = (persistent + parts["grads"] + parts["activations"] + parts["logits"]) / GiB
    out["peak_step"] = (persistent + parts["grads"] + parts["optimizer_temp"]) / GiB
    out["peak_generate"] = (persistent + parts["kv_cache"] + parts["prefill"]) / GiB
    out["peak"] = max(out["peak_train"], out["peak_step"], out["peak_generate"])
    out["trainable_params"] = trainable
    return out


# Plans: a training profile of cocos_lib/config.py PROFILES (its model, dtype, LoRA rank, micro-batch,
# generation batch, new tokens and checkpointing are read from there) and what the profile table does
# not say: the card each must fit, the reference kind and the sequence lengths.
PLANS: dict[str, dict] = {
    # Colab T4: 16 GB (15.1 GiB usable after the driver), no bf16 -> fp16 weights, LoRA adapters in
    # fp32 (master weights for what is trained); loss scaling advised for fp16 activations' grads.
    # Lengths: turn-1 prompts (3-shot MBPP) up to ~300 tokens, turn-2 prompts up to 812 (turn 1 + its answer), so
    # a micro-batch's logits span from the shortest turn-2 prompt to the longest row: ~1,000 positions.
    "colab": dict(profile="colab", device_gb=15.0, config=dict(
        reference="adapter", train_seq=1324, logit_tokens=1000, prompt_len=812, backend="static")),
    # the same on the paper's model: Qwen2.5-1.5B also fits a T4 with LoRA
    "colab-1.5b": dict(profile="colab", model="Qwen/Qwen2.5-1.5B", device_gb=15.0, config=dict(
        reference="adapter", train_seq=1324, logit_tokens=1000, prompt_len=812, backend="static")),
    # paper: Qwen2.5-1.5B full fine-tuning in bf16 (docs/paper.md §4) with fp32 master weights, Adam states
    # and gradients (cocos_lib/optim.py: 18 bytes per parameter, as the release's DeepSpeed ZeRO),
    # a frozen bf16 reference copy, 128 rollouts generated at once; turn-2 prompts hold the task,
    # the first answer and the instruction.
    "paper": dict(profile="paper", device_gb=79.0, config=dict(
        master_fp32=True, reference="copy", train_seq=1324, logit_tokens=1000, prompt_len=812, backend="static")),
}

# Independent estimates of the same runs (issue 26's review, by hand from the same shapes), shown next to the
# plans in the README where they differ: the T4 training peak, and the paper run (+ its static caches).
INDEPENDENT_GIB: dict[str, str] = {
    "colab": "5.0-7.2 (training)",
    "paper": "36-40 + 9-18 static caches",
}


def plan_config(name: str) -> tuple[str, MemoryConfig]:
    """(model, MemoryConfig) of plan `name`: the training profile's settings plus the plan's own."""
    p = PLANS[name]
    train = profile_settings(p["profile"])
    turn1 = train["prompts_per_update"] if train["share_first_turn"] else train["prompts_per_update"] * train["k"]
    cfg = MemoryConfig(dtype=train["dtype"], lora_r=train["lora_r"], micro_batch=train["micro_batch"],
                       gen_batch=train["gen_batch_size"], new_tokens=train["max_new_tokens"], turn1_batch=turn1,
                       gradient_checkpointing=train["gradient_checkpointing"], **p["config"])
    return p.get("model", train["model"]), cfg


def plan(profile: str, **overrides) -> dict:
    """The estimate for a profile's plan (overrides replace MemoryConfig fields), with the headroom
    left on its card: {"profile", "model", "device_gb", "fits", "headroom_gb", **estimate}."""
    if profile not in PLANS:
        raise MemoryConfigError(f"profile '{profile}': expected one of {sorted(PLANS)}")
    p = PLANS[profile]
    model, cfg = plan_config(profile)
    cfg = dataclasses.replace(cfg, **overrides)
    est = estimate(Shape.from_config(arch_config(model)), cfg)
    return {"profile": profile, "model": model, "device_gb": p["device_gb"],
            "fits": est["peak"] <= p["device_gb"], "headroom_gb": p["device_gb"] - est["peak"],
            "config": dataclasses.asdict(cfg), **est}
