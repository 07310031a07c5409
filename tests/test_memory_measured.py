"""memory.estimate's formulas against what the same code allocates, measured on small shapes on the CPU with
cocos_lib.notebook.live_bytes.LiveBytes (live tensor storage bytes: what torch.cuda.max_memory_allocated counts on a GPU,
without allocator rounding). The formulas carry to the GPU; the CUDA context and allocator slack do not (the plan's
overhead_gb). Tolerances: the formulas leave out tensors of O(hidden) or O(1) per token (norm statistics, rotary
tables, masks, losses), a few percent at these shapes, so 10% where the counted tensors dominate."""
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM, Qwen2Config

from cocos_lib.generation.static import cache_length, static_generate
from cocos_lib.notebook.live_bytes import LiveBytes
from cocos_lib.logprobs import build_batch, token_logprobs
from cocos_lib.notebook.memory import Shape, activation_bytes, kv_cache_bytes, logits_bytes
from cocos_lib.optim import adamw_kwargs
from cocos_lib.sampling import SamplingConfig


def qwen2(vocab, hidden, inter, layers, dtype=torch.float32):
    cfg = Qwen2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                      tie_word_embeddings=True)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg).to(dtype), cfg


def turn2_rows(prompts, completion):
    """A micro-batch of turn-2 rows with mixed prompt lengths (the logits span starts at the shortest)."""
    turn = SimpleNamespace
    return [turn(turns=[turn(prompt_ids=[7] * 3, completion_ids=[8]),
                        turn(prompt_ids=[20 + i] * p, completion_ids=[30 + i] * completion)])
            for i, p in enumerate(prompts)]


def training_microbatch_peak(model, prompts, completion):
    """Peak live bytes of the training micro-batch's log-probs forward and backward (logprobs.token_logprobs, as
    rl.rl_step calls it), above the weights; the span it computes logits over."""
    batch = build_batch(turn2_rows(prompts, completion), [2], 0)
    with LiveBytes() as live:
        lp = token_logprobs(model, batch.input_ids, batch.attention_mask, batch.start(), 0.9)
        (lp * batch.mask).sum().backward()
    grads = sum(p.numel() * p.element_size() for p in model.parameters())
    model.zero_grad(set_to_none=True)
    return live.peak - grads, batch.mask.shape[1] + 1 - batch.start()


@pytest.mark.parametrize("dtype, name", [(torch.float32, "fp32"), (torch.bfloat16, "bf16")])
def test_logits_span_from_the_earliest_completion_as_measured(dtype, name):
    """Logits-dominated shape (V = 8,192, h = 32): the peak is logits_bytes over the span from the shortest prompt,
    not over the completion alone (the former plan: 2 x micro x 512-ish x V + one row)."""
    model, cfg = qwen2(8192, 32, 64, 1, dtype)
    s = Shape.from_config(cfg)
    measured, span = training_microbatch_peak(model, [20, 60, 120, 90], 60)
    assert span == 120 + 60 - 19                                       # shortest prompt's completion to the end
    formula = logits_bytes(s, 4, span, name)
    assert 0.85 * formula <= measured <= 1.15 * formula, (measured, formula)   # the fp32 rows overlap differently
    old = 4 * 60 * 8192 * 2 * (4 if name == "fp32" else 2) + 60 * 8192 * 4   # the former logits term
    assert measured > 3 * old                                          # what it missed at these lengths


def test_activations_per_layer_as_measured():
    """Layer-dominated shape (V = 256, h = 256, I = 512), no checkpointing: activation_bytes of 2 and 4 layers
    (+ the logits) against the measured peak. Not counted: O(h) per token outside the layers (embedding output,
    final norm, rotary tables), a fixed share per token, so a larger part at 2 layers: within 15%."""
    for layers in (2, 4):
        model, cfg = qwen2(256, 256, 512, layers)
        s = Shape.from_config(cfg)
        measured, span = training_microbatch_peak(model, [200, 200, 200, 200], 56)
        formula = activation_bytes(s, 4 * 256, "fp32", checkpointing=False) + logits_bytes(s, 4, span, "fp32")
        print(f"{layers} layers: measured {measured} B, formula {formula} B ({measured / formula:.3f})")
        assert 0.95 * formula <= measured <= 1.15 * formula, (layers, measured, formula)


def test_foreach_adamw_temporary_and_fused_none():
    """The optimizer peak: foreach AdamW allocates one fp32 temporary per weight at the step (after the first,
    which creates m and v); fused (optim.adamw_kwargs on CUDA) none."""
    n = 1_000_000
    peaks = {}
    for fused in (False, True):
        w = torch.nn.Parameter(torch.randn(n))
        opt = torch.optim.AdamW([w], lr=1e-3, foreach=not fused, fused=fused)
        w.grad = torch.randn(n)
        opt.step()                                                       # states m, v exist from here on
        with LiveBytes() as live:
            opt.step()
        peaks[fused] = live.peak
    assert n * 4 <= peaks[False] <= 1.01 * n * 4 and peaks[True] < 0.01 * n * 4
    cuda = SimpleNamespace(device=torch.device("cuda"))
    assert adamw_kwargs([cuda, cuda]) == {"fused": True}
    assert adamw_kwargs([cuda, SimpleNamespace(device=torch.device("cpu"))]) == {}


def test_generation_caches_as_measured():
    """static: a StaticCache of cache_length(P + N) positions (bucketed) holds what kv_cache_bytes counts;
    hf: HF generate's peak is the grown cache, one layer's copy (torch.cat) and the prefill's temporaries."""
    from cocos_lib.generation import static as fastgen
    model, cfg = qwen2(256, 64, 128, 4)
    s = Shape.from_config(cfg)
    policy = SimpleNamespace(model=model, tokenizer=None, eos_token_ids=[], decode_cache=fastgen.DecodeCache())
    prompts = [[5] * 100, [6] * 90]
    sampling = SamplingConfig(max_new_tokens=40, stop=None, greedy=True, batch_size=2)
    fastgen._static_cache(policy.decode_cache.static_caches, model, 2, cache_length(140))
    static_generate(policy, prompts, sampling, compact=False, compile=False)
    layers = fastgen._static_cache_fresh(model, cache_length(140))
    with torch.no_grad():
        model(input_ids=torch.tensor(prompts[:1] * 2), cache=layers, use_cache=True)
    held = sum(t.numel() * t.element_size() for layer in layers.layers for t in (layer.keys, layer.values))
    assert cache_length(140) == 256 and held == kv_cache_bytes(s, 2, 256, "fp32")
    ids = torch.tensor([[5] * 100, [6] * 100])
    with LiveBytes() as live:
        model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=40, do_sample=False,
                       pad_token_id=0, eos_token_id=None)
    grown = kv_cache_bytes(s, 2, 140, "fp32")
    prefill = 2 * 100 * (3 * 128 + 4 * 64) * 4 + 2 * 256 * (4 + 3 * 4)
    print(f"hf generate: measured {live.peak} B, cache {grown} + a layer's copy {grown // s.layers} + prefill {prefill}")
    assert grown + grown // s.layers <= live.peak <= 1.5 * (grown + grown // s.layers + prefill)
