"""How close a forward comes to fp16's limit (65,504), measured on the CPU: the largest |value| of each decoder
layer's output (the residual stream), of the MLP's down_proj input (act(gate) * up) and of the logits.

    python benchmarks/fp16_range.py [--layers 4] [--tokens 512]

Two models, both on one real turn-2-sized input (HumanEval/0's prompt repeated to --tokens tokens):
  random-1.5b   Qwen2.5-1.5B's shapes (memory.ARCHS) with --layers layers and random weights (from_config).
                NOT representative of trained activations: trained Qwen2.5 models grow a few very large
                residual-stream channels that random initialisation does not have. It shows the shape's
                baseline only.
  trained-0.5b  the registry's Qwen2.5-Coder-0.5B-Instruct (`make setup`), all 24 layers, trained weights:
                the closest trained model this machine has (the colab profile trains Qwen2.5-0.5B). Skipped,
                saying so, when it is not fetched.
Each runs in fp32 (the reference range) and in fp16 (finite or not, and the largest |logit| difference).
One JSON line per model.
"""
from __future__ import annotations

import argparse
import json

import torch


def ranges(model, ids: torch.Tensor) -> dict:
    """Largest |value| per layer output and MLP down_proj input, and of the logits; one forward, no grad."""
    layer_max, mlp_max, hooks = [], [], []
    layers = model.model.layers
    for layer in layers:
        hooks.append(layer.register_forward_hook(
            lambda m, a, out: layer_max.append(float((out[0] if isinstance(out, tuple) else out).abs().max()))))
        hooks.append(layer.mlp.down_proj.register_forward_pre_hook(
            lambda m, a: mlp_max.append(float(a[0].abs().max()))))
    try:
        with torch.no_grad():
            logits = model(input_ids=ids).logits
    finally:
        for h in hooks:
            h.remove()
    return {"residual_max": max(layer_max), "residual_max_per_layer": [round(v, 1) for v in layer_max],
            "mlp_in_max": max(mlp_max), "logits_max": float(logits.abs().max()),
            "finite": bool(torch.isfinite(logits).all()), "logits": logits}


def measure(name: str, model, ids: torch.Tensor) -> dict:
    ref = ranges(model.float(), ids)
    half = ranges(model.half(), ids)
    diff = float((half["logits"].float() - ref["logits"]).abs().max()) if half["finite"] else None
    out = {"model": name, "tokens": ids.shape[1], "fp16_limit": 65504.0,
           **{f"fp32_{k}": v for k, v in ref.items() if k != "logits"},
           "fp16_finite": half["finite"], "fp16_residual_max": half["residual_max"],
           "fp16_logits_max_abs_diff": diff}
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=4, help="layers of the random 1.5B-shaped model")
    ap.add_argument("--tokens", type=int, default=512)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cocos_lib import registry_models
    from cocos_lib.notebook.memory import arch_config
    from cocos_lib.task_sets import load_tasks
    folder = registry_models.fetched_dir("qwen2.5-coder-0.5b-instruct")
    task = load_tasks("humaneval")[0]
    text = task.text + "\n" + (task.reference or "")
    if folder is not None:
        tok = AutoTokenizer.from_pretrained(folder)
        base = tok(text).input_ids
    else:
        base = list(range(1000, 1200))
    ids = torch.tensor([(base * (args.tokens // len(base) + 1))[:args.tokens]])
    random_model = AutoModelForCausalLM.from_config(arch_config("Qwen/Qwen2.5-1.5B", num_hidden_layers=args.layers))
    print(json.dumps(measure(f"random-1.5b ({args.layers} layers, random weights: not representative)",
                             random_model.eval(), ids)))
    del random_model
    if folder is None:
        print(json.dumps({"model": "trained-0.5b", "skipped": "not fetched (make setup)"}))
        return
    trained = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    print(json.dumps(measure("trained-0.5b (Qwen2.5-Coder-0.5B-Instruct, 24 layers)", trained, ids)))


if __name__ == "__main__":
    main()
