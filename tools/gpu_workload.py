"""What a real CoCoS run needs, from measured facts instead of guesses; and what it costs on this CPU.

  python tools/gpu_workload.py [--facts data/results/real/tokenizer_facts.json]
      [--train data/results/real/train_cpu/metrics.jsonl] [--out data/results/real/train_cpu/gpu_workload.json]

Workload of the `paper` profile (docs/paper.md §4: 1500 updates, 64 prompts x k = 2, turn 1 shared, so 64
turn-1 + 128 turn-2 generations and 128 trained turn-2 rows per update), in tokens, with the real
Qwen2.5 tokenizer's counts of HumanEval prompts (completion format) and solutions (reference
program + "[DONE]"): generated tokens with the released no-stop rollouts (512 each) and with the
stop at [DONE]; prompt tokens prefilled; tokens in the policy-gradient pass (turn-2 prompt +
answer, forward + backward) and in the reference pass (forward only). Then the seconds one update
of the CPU run took (data/results/real/train_cpu) scaled to that workload: why it needs a GPU.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "data" / "results" / "real"


def workload(facts: dict, updates: int = 1500, prompts: int = 64, k: int = 2, max_new: int = 512) -> dict:
    p, sol = facts["prompts"], facts["solutions"]["reference_program_done"]
    t1, t2, answer = p["completion_turn1"]["mean"], p["completion_turn2_reference"]["mean"], sol["mean"]
    gens = prompts + prompts * k                       # shared turn 1 + k turn-2 samples
    per_update = {"generations": gens, "trained_rows": prompts * k,
                  "generated_tokens_nostop": gens * max_new, "generated_tokens_stop": round(gens * answer),
                  "prompt_tokens": round(prompts * t1 + prompts * k * t2),
                  "trained_tokens": round(prompts * k * (t2 + answer))}
    return {"updates": updates, "per_update": per_update,
            "total": {key: v * updates for key, v in per_update.items()},
            "assumes": "means of the committed HumanEval token counts (MBPP prompts are shorter, its 3-shot "
                       "turn-1 block longer); answers as long as the reference programs"}


def cpu_cost(rows: list[dict], config: dict, work: dict) -> dict:
    """Seconds of the measured CPU updates per generated token / trained row, scaled to the paper workload."""
    gen_s = sum(r["sec_generate"] for r in rows)
    tokens = sum(r["tokens"] for r in rows)
    train_s = sum(r["sec_update"] - r["sec_rollout"] for r in rows)
    per = work["per_update"]
    s_gen = per["generated_tokens_stop"] * gen_s / tokens
    s_train = train_s / len(rows) * per["trained_rows"] / (config["prompts_per_update"] * config["k"])
    return {"measured_updates": len(rows), "sec_generate_per_token": gen_s / tokens,
            "sec_train_per_update": train_s / len(rows), "paper_update_s_estimate": s_gen + s_train,
            "paper_run_days_estimate": (s_gen + s_train) * work["updates"] / 86400,
            "note": "linear scaling of this 2-core CPU's measured seconds; only to show the order of magnitude"}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--facts", default=str(REAL / "tokenizer_facts.json"))
    p.add_argument("--train", default=str(REAL / "train_cpu" / "metrics.jsonl"))
    p.add_argument("--out", default=str(REAL / "train_cpu" / "gpu_workload.json"))
    p.add_argument("--skip", type=int, default=0, help="leave out the first N updates (e.g. one whose timing held a pause)")
    args = p.parse_args(argv)
    work = workload(json.loads(Path(args.facts).read_text()))
    rows = [json.loads(x) for x in Path(args.train).read_text().splitlines() if x.strip()][args.skip:]
    config = json.loads((Path(args.train).parent / "config.json").read_text())
    command = " ".join(["python tools/gpu_workload.py", *(argv or sys.argv[1:])])
    res = {"paper_profile": work, "this_cpu": cpu_cost(rows, config, work), "command": command}
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
