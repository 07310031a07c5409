"""Memory estimator (cocos_lib/notebook/memory.py) against numbers computed by hand for Qwen2.5-0.5B."""
import dataclasses

import pytest

from cocos_lib.notebook.memory import (GiB, MemoryConfig, MemoryConfigError, Shape, activation_bytes, arch_config,
                              estimate, kv_cache_bytes, lora_params, plan)

# Qwen2.5-0.5B: h=896, I=4864, 24 layers, 14 heads, 2 KV heads, head_dim 64, V=151936, tied.
# embed 151936*896 = 136,134,656; per layer: q 896*896+896 = 803,712; k, v 896*128+128 = 114,816
# each; o 896*896 = 802,816; MLP 3*896*4864 = 13,074,432; 2 norms 1,792 -> 14,912,384;
# x24 = 357,897,216; + final norm 896  ->  494,032,768.
P05 = 494_032_768


@pytest.fixture(scope="module")
def qwen05():
    return Shape.from_config(arch_config("Qwen/Qwen2.5-0.5B"))


def test_shape_params_hand_computed(qwen05):
    assert qwen05 == Shape(P05, 24, 896, 4864, 14, 2, 64, 151936)
    # Qwen2.5-1.5B: 151936*1536 + 28*(2,360,832 + 2*393,472 + 2,359,296 + 41,287,680 + 3,072) + 1536
    assert Shape.from_config(arch_config("Qwen/Qwen2.5-1.5B")).params == 1_543_714_304


def test_kv_cache_and_lora_hand_computed(qwen05):
    # 2 (K,V) * 24 layers * 2 heads * 64 * 2 bytes = 12,288 B per token; 64 rows x 812 tokens
    assert kv_cache_bytes(qwen05, 64, 812, "bf16") == 12_288 * 64 * 812 == 638_582_784
    assert kv_cache_bytes(qwen05, 1, 1, "fp32") == 24_576
    # r=16: q 16*(896+896) + k,v 16*(896+128) each + o 16*1792 + gate,up,down 16*(896+4864) each
    #     = 28,672 + 2*16,384 + 28,672 + 3*92,160 = 366,592 per layer; x24
    assert lora_params(qwen05, 16) == 366_592 * 24 == 8_798_208


def test_activations_hand_computed(qwen05):
    # per token and layer, bf16: 2*(7*896 + 2*128 + 4*4864) + 8*896 = 2*25,984 + 7,168 = 59,136 B
    assert activation_bytes(qwen05, 1, "bf16", checkpointing=False) == 24 * 59_136
    # checkpointing: each layer's input 24 * 2*896 = 43,008 B, plus one layer recomputed
    assert activation_bytes(qwen05, 10, "bf16", checkpointing=True) == 10 * (43_008 + 59_136)


def test_full_bf16_estimate_hand_computed(qwen05):
    c = MemoryConfig(dtype="bf16", reference="copy", micro_batch=2, train_seq=100, logit_tokens=50,
                     gen_batch=4, prompt_len=10, new_tokens=20, overhead_gb=1.0)
    e = estimate(qwen05, c)
    assert e["weights"] * GiB == 2 * P05 and e["reference"] * GiB == 2 * P05
    assert e["grads"] * GiB == 2 * P05 and e["optimizer"] * GiB == 4 * P05 and e["master"] == 0
    assert e["persistent"] * GiB == pytest.approx(8 * P05 + GiB)
    # saved logits, the gradient of their slice, autograd's full-size slice gradient (3 x) + one fp32 row
    assert e["logits"] * GiB == 3 * 2 * 50 * 151936 * 2 + 50 * 151936 * 4
    # hf backend: the grown cache (4 rows x 30 tokens) + one layer's copy while torch.cat grows it
    assert e["kv_cache"] * GiB == 12_288 * 4 * 30 + 12_288 * 4 * 30 // 24
    assert e["peak_train"] * GiB == pytest.approx(10 * P05 + GiB + 200 * (43_008 + 59_136) + e["logits"] * GiB)
    assert e["optimizer_temp"] == 0 and e["peak_step"] * GiB == pytest.approx(10 * P05 + GiB)
    assert e["peak"] == max(e["peak_train"], e["peak_step"], e["peak_generate"])
    # foreach AdamW (no fused): one temporary per trainable weight in the states' dtype at the step
    assert estimate(qwen05, dataclasses.replace(c, fused_adamw=False))["optimizer_temp"] * GiB == 2 * P05
    # static backend: turn-1 and turn-2 caches, bucketed (fastgen.cache_length: 256 positions each here), never
    # persistent (released before the backward)
    k = estimate(qwen05, dataclasses.replace(c, backend="static", turn1_batch=2, turn1_prompt_len=5))
    assert k["kv_cache"] * GiB == 12_288 * 4 * 256 + 12_288 * 2 * 256
    assert k["persistent"] == e["persistent"] and k["peak_train"] == e["peak_train"]
    # fp32 master weights: +4P master, Adam states in fp32 (8P), grads fp32 (4P)
    m = estimate(qwen05, MemoryConfig(dtype="bf16", master_fp32=True))
    assert m["master"] * GiB == 4 * P05 and m["optimizer"] * GiB == 8 * P05 and m["grads"] * GiB == 4 * P05
    # checkpointing saves memory; full fine-tuning costs more than LoRA
    assert estimate(qwen05, MemoryConfig(gradient_checkpointing=False))["activations"] > 10 * e["activations"]


def test_lora_fp16_estimate(qwen05):
    c = MemoryConfig(dtype="fp16", lora_r=16, reference="adapter")
    e = estimate(qwen05, c)
    L = 8_798_208
    assert e["trainable_params"] == L
    assert e["weights"] * GiB == 2 * P05 + 4 * L      # fp16 base + fp32 adapters
    assert e["optimizer"] * GiB == 8 * L and e["grads"] * GiB == 4 * L and e["reference"] == 0


def test_plans_fit_their_cards():
    colab = plan("colab")
    assert colab["config"]["dtype"] == "fp16" and colab["config"]["lora_r"] > 0   # T4: no bf16
    assert colab["fits"] and colab["peak"] < 15.0 * 0.85                          # >= 15% headroom
    assert plan("colab-1.5b")["fits"] and plan("colab-1.5b")["peak"] < 15.0 * 0.85
    paper = plan("paper")
    assert paper["model"] == "Qwen/Qwen2.5-1.5B" and paper["config"]["dtype"] == "bf16"
    assert paper["fits"] and paper["peak"] < 79.0
    assert not plan("paper", gradient_checkpointing=False, micro_batch=32)["fits"]


def test_bad_input_one_line():
    with pytest.raises(MemoryConfigError, match="dtype='int8'"):
        MemoryConfig(dtype="int8")
    with pytest.raises(MemoryConfigError, match="needs lora_r"):
        MemoryConfig(reference="adapter")
    with pytest.raises(MemoryConfigError, match="profile 'x'"):
        plan("x")
    with pytest.raises(MemoryConfigError, match="arch 'gpt5'"):
        arch_config("gpt5")


def test_memory_plan_cli(capsys):
    import json
    import runpy
    from pathlib import Path
    cli = runpy.run_path(str(Path(__file__).parents[1] / "benchmarks" / "memory_plan.py"))
    cli["main"](["--plan", "colab", "--set", "micro_batch=2", "gradient_checkpointing=false"])
    rec = json.loads(capsys.readouterr().out.strip())
    assert rec["profile"] == "colab" and rec["config"]["micro_batch"] == 2
    assert rec["config"]["gradient_checkpointing"] is False
    with pytest.raises(SystemExit, match="unknown field 'foo'"):
        cli["main"](["--set", "foo=1"])


def test_paper_plan_keeps_fp32_master_weights():
    """#15: the paper profile trains bf16 weights through fp32 masters (cocos_lib/optim.py): 18 bytes a weight."""
    paper = plan("paper")
    P = paper["trainable_params"]
    assert paper["config"]["master_fp32"] is True
    assert paper["master"] * GiB == 4 * P and paper["optimizer"] * GiB == 8 * P and paper["grads"] * GiB == 4 * P
    assert (paper["weights"] + paper["master"] + paper["optimizer"] + paper["grads"]) * GiB == 18 * P
    assert paper["fits"] and paper["peak"] < 79.0 * 0.6  # ~39 GiB on an 80 GB card


def test_readme_memory_table_is_the_generated_one():
    """README's memory table is `benchmarks/memory_plan.py --markdown`, labelled as estimates."""
    import re
    import runpy
    from pathlib import Path
    root = Path(__file__).parents[1]
    cli = runpy.run_path(str(root / "benchmarks" / "memory_plan.py"))
    readme = (root / "README.md").read_text()
    block = re.search(r"<!-- memory-table: python benchmarks/memory_plan.py --markdown -->\n(.*?)\n<!-- /memory-table -->",
                      readme, re.S).group(1)
    assert block == cli["markdown"]()
    assert "#### GPU memory plans (estimates, not measurements)" in readme
    assert "| colab | Qwen/Qwen2.5-0.5B | 15 GB |" in block and "5.0-7.2 (training)" in block
    assert "36-40 + 9-18 static caches" in block
