"""What the code extraction does to Acc@t1 and Acc@t2: the committed real-model answers re-scored (no generation).

  python benchmarks/extraction_effect.py [--study data/results/real] [--workers 2]
      [--out data/results/real/extraction_effect.json] [--figure figures/21_extraction_effect.png]

The study's stored completions (Qwen2.5-Coder-0.5B-Instruct, chat format, greedy, 164 HumanEval tasks) are
extracted again three ways and every code that differs from the stored one is run by the executor:
- lenient: `prompts.extract_answer(text, "chat")` (what the study used; checked to equal the stored code);
- release: `extract_answer(text, "chat", "release")`: the release's code_process with the chat format's
  closing fence as its [DONE] (prompts.py docstring);
- release, bare: the release's code_process on the answer as a completion-format answer would reach it
  (the "```python\\n" pre-fill put back, no [DONE] anywhere): the release keeps such a text as it is.
Acc@t2 uses each turn's own stored completion; the turn-2 prompts were built from the lenient turn-1 codes,
so the t2 numbers are a re-scoring of the same answers, not a re-run.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cocos_lib.executor import Job, open_executor  # noqa: E402
from cocos_lib.prompts import CHAT_PREFILL, extract_answer, release_extract  # noqa: E402
from cocos_lib.tasks import load_humaneval  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WAYS = {
    "lenient": lambda text: extract_answer(text, "chat", "lenient"),
    "release": lambda text: extract_answer(text, "chat", "release"),
    "release, bare": lambda text: release_extract(CHAT_PREFILL + (text or "")),
}


def rescore(rows: list[dict], workers: int) -> dict:
    tasks = {t.task_id: t for t in load_humaneval()}
    out: dict = {}
    with open_executor(workers=workers) as ex:
        for way, fn in WAYS.items():
            codes = [fn(r["text"]) for r in rows]
            todo = [i for i, (r, c) in enumerate(zip(rows, codes)) if c != r["code"]]
            reports = ex.run_many([Job(code=codes[i], tests=tuple(tasks[rows[i]["task_id"]].tests),
                                       setup=tasks[rows[i]["task_id"]].setup, timeout_s=3.0) for i in todo])
            correct = [bool(r["correct"]) for r in rows]
            for i, rep in zip(todo, reports):
                correct[i] = bool(rep.all_passed)
            per_turn = {}
            for t in sorted({r["turn"] for r in rows}):
                idx = [i for i, r in enumerate(rows) if r["turn"] == t]
                per_turn[f"acc_t{t}"] = round(100 * sum(correct[i] for i in idx) / len(idx), 1)
                per_turn[f"changed_t{t}"] = sum(1 for i in todo if rows[i]["turn"] == t)
            out[way] = per_turn
    return out


def plot(result: dict, path: Path) -> Path:
    from matplotlib.figure import Figure

    from cocos_lib.report.plots import style
    with style():
        fig = Figure(figsize=(6, 3.2))
        ax = fig.add_subplot()
        ways = list(result)
        for j, t in enumerate((1, 2)):
            vals = [result[w][f"acc_t{t}"] for w in ways]
            bars = ax.bar([i + 0.38 * j for i in range(len(ways))], vals, width=0.36, label=f"Acc@t{t}")
            ax.bar_label(bars, fmt="%.1f", fontsize=8)
        ax.set_xticks([i + 0.19 for i in range(len(ways))], ways)
        ax.set_ylabel("% of 164 HumanEval tasks")
        ax.set_title("Code extraction vs accuracy (Qwen2.5-Coder-0.5B-Instruct, chat, greedy)", fontsize=9)
        ax.legend(fontsize=8)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    return path


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study", default=str(ROOT / "data" / "results" / "real"))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "data" / "results" / "real" / "extraction_effect.json"))
    p.add_argument("--figure", default=str(ROOT / "figures" / "21_extraction_effect.png"))
    args = p.parse_args(argv)
    rows = [json.loads(line) for line in open(Path(args.study) / "study_cocos.jsonl")]
    rows = [r for r in rows if r["turn"] <= 2]
    stored = sum(WAYS["lenient"](r["text"]) != r["code"] for r in rows)
    source = f"{Path(args.study).resolve().relative_to(ROOT)}/study_cocos.jsonl (turns 1-2)"
    result = {"source": source, "n_tasks": len({r["task_id"] for r in rows}),
              "lenient_differs_from_stored": stored, "acc": rescore(rows, args.workers),
              "command": "python benchmarks/extraction_effect.py"}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    plot(result["acc"], Path(args.figure))
    print(json.dumps(result["acc"]))
    return result


if __name__ == "__main__":
    main()
