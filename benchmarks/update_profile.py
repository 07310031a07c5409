"""Where a LoRA update's time goes on this CPU: torch.profiler over forward + backward of the real model.

  python benchmarks/update_profile.py [--rows 2] [--tokens 400] [--dtype auto] [--threads 2] [--out FILE]

One micro-batch as the `cpu` profile trains it (LoRA r = 8 on q/k/v/o/gate/up/down, no gradient checkpointing,
logits only over the last quarter of the positions, fp32 log-softmax), after one untimed warm-up pass. Self CPU
time is grouped into matmuls (the LoRA base weights and adapters, lm_head), attention (scaled dot product),
and the rest (norms, rotary, activations, softmax, copies, dtype casts), with the 12 most expensive operators.
The matmul FLOPs of the pass (forward 2 x params x tokens, backward about twice that, minus the frozen weights'
weight gradients) over the matmul time give the achieved matmul rate; JSON on stdout.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch  # noqa: E402

from cocos_lib.config import make_config  # noqa: E402
from cocos_lib.train import load_models  # noqa: E402

MATMUL = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "aten::_mkldnn", "mkldnn")
ATTENTION = ("scaled_dot_product", "_flash_attention", "_efficient_attention")


def group(name: str) -> str:
    if any(name.startswith(m) for m in MATMUL):
        return "matmul"
    if any(a in name for a in ATTENTION):
        return "attention"
    return "other"


def one_pass(model, ids: torch.Tensor, keep: int) -> None:
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), logits_to_keep=keep, use_cache=False)
    lp = torch.log_softmax(out.logits.float(), dim=-1)                       # [B, keep, V] fp32, as the loss
    lp.gather(-1, ids[:, -keep:].unsqueeze(-1)).sum().backward()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=2)
    p.add_argument("--tokens", type=int, default=400)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = make_config("cpu", dtype=args.dtype)
    policy, _ = load_models(cfg)
    model = policy.model
    model.train()
    ids = torch.randint(100, 20_000, (args.rows, args.tokens), generator=torch.Generator().manual_seed(0))
    keep = args.tokens // 4
    one_pass(model, ids, keep)                                               # warm-up (allocations, kernels)
    model.zero_grad(set_to_none=True)
    t = time.perf_counter()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        one_pass(model, ids, keep)
    wall = time.perf_counter() - t
    ops = [(e.key, e.self_cpu_time_total / 1e6) for e in prof.key_averages()]
    total = sum(s for _, s in ops)
    shares: dict[str, float] = {}
    for name, s in ops:
        shares[group(name)] = shares.get(group(name), 0.0) + s / total
    n_params = sum(x.numel() for n, x in model.named_parameters() if "embed_tokens" not in n)
    tokens = args.rows * args.tokens
    c = model.config
    flops = 4 * n_params * tokens + 4 * c.hidden_size * c.vocab_size * args.rows * keep  # fwd + activation grads, lm_head
    top = sorted(ops, key=lambda x: -x[1])[:12]
    res = {"rows": args.rows, "tokens": tokens, "dtype": str(model.dtype), "threads": args.threads,
           "wall_s": wall, "tokens_per_s": tokens / wall, "shares": shares,
           "matmul_gflops": flops / (shares.get("matmul", 0.0) * total) / 1e9 if shares.get("matmul") else None,
           "top_ops": [{"op": n, "s": s, "share": s / total} for n, s in top]}
    print(json.dumps(res))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
