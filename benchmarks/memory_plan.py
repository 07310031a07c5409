"""Print the memory plans (cocos_lib/notebook/memory.py) as JSON lines: the colab profile on a 16 GB T4
and the paper profile on an 80 GB card, plus any model / knob combination you ask for.

  python benchmarks/memory_plan.py                                  # both plans
  python benchmarks/memory_plan.py --plan paper --set micro_batch=16 gradient_checkpointing=false
  python benchmarks/memory_plan.py --model Qwen/Qwen2.5-1.5B --set dtype=fp16 lora_r=16 reference=adapter
  python benchmarks/memory_plan.py --markdown                       # the README's memory table
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cocos_lib.notebook import memory  # noqa: E402


def parse_sets(items: list[str]) -> dict:
    fields = {f.name: f.type for f in dataclasses.fields(memory.MemoryConfig)}
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if key not in fields:
            raise SystemExit(f"--set {item}: unknown field '{key}' (fields: {', '.join(fields)})")
        kind = fields[key] if isinstance(fields[key], str) else fields[key].__name__
        out[key] = (value.lower() in ("1", "true", "yes") if kind == "bool" else
                    int(value) if kind == "int" else float(value) if kind == "float" else value)
    return out


def markdown() -> str:
    """The README's table: every plan's three peaks and its parts (GiB, estimates), with the independent
    estimate (memory.INDEPENDENT_GIB) where there is one."""
    rows = ["| plan | model | card | persistent | training peak (activations + logits) | optimizer step | "
            "generation peak (KV caches) | plan peak | independent estimate |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name in sorted(memory.PLANS):
        e = memory.plan(name)
        rows.append(f"| {name} | {e['model']} | {e['device_gb']:.0f} GB | {e['persistent']:.1f} | "
                    f"{e['peak_train']:.1f} ({e['activations']:.1f} + {e['logits']:.1f}) | {e['peak_step']:.1f} | "
                    f"{e['peak_generate']:.1f} ({e['kv_cache']:.1f}) | **{e['peak']:.1f}** | "
                    f"{memory.INDEPENDENT_GIB.get(name, '-')} |")
    return "\n".join(rows)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--plan", nargs="*", default=None, choices=sorted(memory.PLANS))
    p.add_argument("--model", choices=sorted(memory.ARCHS), help="estimate this model instead of a plan")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="MemoryConfig overrides")
    p.add_argument("--markdown", action="store_true", help="the README's memory table (GiB, estimates)")
    args = p.parse_args(argv)
    if args.markdown:
        print(markdown())
        return
    sets = parse_sets(args.set)
    if args.model:
        shape = memory.Shape.from_config(memory.arch_config(args.model))
        est = memory.estimate(shape, memory.MemoryConfig(**sets))
        cfg = dataclasses.asdict(memory.MemoryConfig(**sets))
        print(json.dumps({"model": args.model, "config": cfg, **{k: round(v, 3) for k, v in est.items()}}))
        return
    for name in args.plan or sorted(memory.PLANS):
        res = memory.plan(name, **sets)
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in res.items()}))


if __name__ == "__main__":
    main()
