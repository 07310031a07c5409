"""The reflection-failure study on a real model, run turn by turn and resumable.

    python -m cocos_lib.evaluation.study --model qwen2.5-coder-0.5b-instruct --out data/results/real

does what `evaluate.evaluate(policy, tasks, turns=T, prompt_format="chat")` and
`evaluate(..., method="self-refine", turns=2)` do (greedy, same chunks, same prompts, same rows),
but turn-major: turn t of every chunk is computed from the rows of turn t - 1 already on disk
and appended at once, so an interrupted run resumes where it stopped and a finished 2-turn run
extends to 4 turns without redoing turns 1-2. Self-Refine's turn 1 is the same greedy answer to
the same prompt as simple prompting's, so it is taken from those rows, not generated twice.

Writes into --out: `study_cocos.jsonl` and `study_self_refine.jsonl` (`evaluate.write_rows`
format, one row per task and turn), `study_meta.json` (command, model sha256, versions, wall
times, date, the summary metrics), `study_timing.jsonl` (seconds and tokens per chunk and turn)
and `study_examples.json` (real turn-1 -> turn-2 diffs, picked by a fixed rule: `pick_examples`).
"""
from __future__ import annotations

import argparse
import datetime
import difflib
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Sequence

import pandas as pd
import tokenizers
import torch
import transformers
from tqdm.auto import tqdm

from cocos_lib.evaluation import baselines
from cocos_lib import evaluate as E
from cocos_lib import metrics as M
from cocos_lib import registry_models
from cocos_lib.executor import Executor
from cocos_lib.models import load_policy
from cocos_lib.rollout import REPO_FORMAT, RolloutConfig, run_turn, turn_seed
from cocos_lib.sampling import SamplingConfig
from cocos_lib.tasks import load_humaneval

FILES = {"cocos": "study_cocos.jsonl", "self-refine": "study_self_refine.jsonl"}


def _done(path: Path) -> dict[tuple[str, int], dict]:
    """Rows already on disk, by (task_id, turn)."""
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(r["task_id"], r["turn"]): r for r in rows}


def _append(path: Path, rows: Sequence[dict]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        for r in rows:
            clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            f.write(json.dumps(clean, ensure_ascii=False) + "\n")


def run_method(policy, tasks, cfg, executor, path: Path, method: str, turns: int, seed: int = 0,
               first_turn: dict | None = None, progress: bool = True, chunk: int | None = None) -> float:
    """Fill `path` with turns 1..`turns` of `method` for every task; returns the seconds spent.

    Chunks of `chunk` tasks (default cfg.sampling.batch_size), as evaluate(chunk=); turn t of the chunk
    at `start` uses the seed evaluate would (turn_seed(seed + start, t)). first_turn: rows to copy as turn 1."""
    chunk, t0 = chunk or cfg.sampling.batch_size, time.perf_counter()
    done = _done(path)
    for t in range(1, turns + 1):
        todo = {i for i, task in enumerate(tasks) if (task.task_id, t) not in done}
        if t == 1 and first_turn is not None:
            _append(path, [dict(first_turn[(tasks[i].task_id, 1)], method=method) for i in sorted(todo)])
            done = _done(path)
            continue
        bar = tqdm(total=len(todo), desc=f"{method} turn {t}", unit="task", disable=not progress or not todo)
        for start in range(0, len(tasks), chunk):
            part = [(i, tasks[i]) for i in range(start, min(start + chunk, len(tasks))) if i in todo]
            if not part:
                continue
            ts, c0 = [task for _, task in part], time.perf_counter()
            prev = [done[(task.task_id, t - 1)]["code"] for task in ts] if t > 1 else [None] * len(ts)
            feedback = [("", 0)] * len(ts)
            if method == "self-refine":
                new, feedback = baselines.refine_step(policy, ts, prev, cfg, executor, seed + start, t)
            else:
                texts = [REPO_FORMAT.prompt(policy, task, [p] if p is not None else [], cfg) for task, p in zip(ts, prev)]
                new = run_turn(policy, ts, texts, cfg, executor, _turn_seed(seed + start, t))
            rows = [E.turn_row(task.task_id, 0, t, turn, p, method, feedback=fb)
                    for task, turn, p, fb in zip(ts, new, prev, feedback)]
            _append(path, rows)
            _append(path.with_name("study_timing.jsonl"), [dict(
                method=method, turn=t, start=start, n_tasks=len(ts), sec=round(time.perf_counter() - c0, 1),
                prompt_tokens=sum(len(x.prompt_ids) for x in new), new_tokens=sum(r["new_tokens"] for r in rows))])
            done.update({(r["task_id"], t): r for r in rows})
            bar.update(len(part))
        bar.close()
    return time.perf_counter() - t0


def _turn_seed(seed: int, t: int) -> int:
    return turn_seed(seed, t)


def rows_frame(path: Path, tasks, turns: int) -> pd.DataFrame:
    """The rows of `path` for `tasks` and turns <= `turns`, as evaluate returns them."""
    ids = {t.task_id for t in tasks}
    rows = [r for (task_id, t), r in _done(path).items() if task_id in ids and t <= turns]
    for r in rows:
        r["edit_distance"] = math.nan if r.get("edit_distance") is None else r["edit_distance"]
    return E._frame(rows)


def repeats_prompt(df: pd.DataFrame, turn: int) -> pd.Series:
    """Per task: whether the prompt of turn `turn` + 1 is the prompt of turn `turn` again
    (df: the study's rows, one per task and turn; rows_frame gives them).

    A prompt of turn t >= 2 shows the task and only the most recent attempt (the released format;
    run_method renders [code of turn t - 1]), so this holds exactly when the code of `turn` equals the
    code of `turn` - 1; greedy decoding then returns the same answer once more."""
    code = df.pivot(index="task_id", columns="turn", values="code")
    return (code[turn] == code[turn - 1]).rename(f"prompt t{turn + 1} = prompt t{turn}")


def edit_histogram(df: pd.DataFrame, turn: int = 2, bins: Sequence[float] = (0, .05, .1, .2, .4, .6, .8, 1.0)) -> dict:
    """Counts of normalised edit distances turn-1 -> `turn` per bin [a, b) (last bin closed), by answer."""
    out = {"bins": list(bins)}
    for name, values in E.edit_distances(df, turn).items():
        counts = [0] * (len(bins) - 1)
        for v in values:
            j = min(next((k for k in range(len(bins) - 1) if v < bins[k + 1]), len(bins) - 2), len(bins) - 2)
            counts[j] += 1
        out[name] = counts
    return out


def code_diff(a: str, b: str, before: str = "turn 1", after: str = "turn 2") -> str:
    """The unified diff of two programs, one line per line ("" when they are identical)."""
    return "\n".join(difflib.unified_diff(a.splitlines(), b.splitlines(), before, after, lineterm=""))


def pick_examples(df: pd.DataFrame, per_kind: int = 2) -> list[dict]:
    """Turn-1 -> turn-2 diffs, `per_kind` of each kind, first by task order (no cherry-picking):
    unchanged and wrong, unchanged and right, repaired (i->c), broken (c->i), edited and still wrong."""
    wide = df.pivot(index="task_id", columns="turn")
    order = sorted(wide.index, key=lambda s: int(s.split("/")[-1]) if s.split("/")[-1].isdigit() else s)
    kinds = {"unchanged, wrong": lambda r1, r2: r2["no_edit"] and not r2["correct"],
             "unchanged, right": lambda r1, r2: r2["no_edit"] and r2["correct"],
             "repaired (i->c)": lambda r1, r2: not r1["correct"] and r2["correct"],
             "broken (c->i)": lambda r1, r2: r1["correct"] and not r2["correct"],
             "edited, still wrong": lambda r1, r2: not r2["no_edit"] and not r1["correct"] and not r2["correct"]}
    rows = {(r.task_id, r.turn): r._asdict() for r in df.itertuples()}
    out = []
    for kind, test in kinds.items():
        hits = [tid for tid in order if test(rows[(tid, 1)], rows[(tid, 2)])][:per_kind]
        for tid in hits:
            a, b = rows[(tid, 1)]["code"], rows[(tid, 2)]["code"]
            diff = code_diff(a, b)
            out.append(dict(kind=kind, task_id=tid, correct_t1=bool(rows[(tid, 1)]["correct"]),
                            correct_t2=bool(rows[(tid, 2)]["correct"]), edit_distance=rows[(tid, 2)]["edit_distance"],
                            diff=diff or "(identical)"))
    return out


def _clean(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and math.isnan(v) else round(v, 6) if isinstance(v, float) else v)
            for k, v in d.items()}


def versions() -> dict:
    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__, "platform": platform.platform()}


def run_study(model: str, out: str | Path, turns: int = 4, sr_turns: int = 2, limit: int | None = None,
              batch_size: int = 64, chunk: int = 164, max_new_tokens: int = 512, backend: str = "packed",
              threads: int | None = None, workers: int = 2, skip_self_refine: bool = False, progress: bool = True,
              argv=None, sr_limit: int | None = None) -> dict:
    """Run (or resume) the study into `out`; returns the meta dict written to study_meta.json.

    chunk: tasks per generation call (sorted by prompt length there, then cut into batches of
    batch_size: little padding in the prefill, which dominates on a CPU); rows are written per chunk.
    sr_limit: Self-Refine on the first sr_limit tasks only (None: all; simple prompting always runs on all)."""
    if threads:
        torch.set_num_threads(threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = load_humaneval()[:limit]
    sr_tasks = tasks[:sr_limit]
    policy = load_policy(model, dtype="fp32", device="cpu")
    sampling = SamplingConfig(greedy=True, max_new_tokens=max_new_tokens, batch_size=batch_size)
    cfg = RolloutConfig(turns=turns, k=1, share_first_turn=False, sampling=sampling, backend=backend,
                        prompt_format="chat")
    meta_path = out / "study_meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    wall = meta.get("wall_s", {})
    with Executor(workers=workers) as ex:
        wall["cocos"] = wall.get("cocos", 0.0) + run_method(policy, tasks, cfg, ex, out / FILES["cocos"], "cocos",
                                                            turns, progress=progress, chunk=chunk)
        if not skip_self_refine:
            first = _done(out / FILES["cocos"])
            wall["self-refine"] = wall.get("self-refine", 0.0) + run_method(
                policy, sr_tasks, cfg, ex, out / FILES["self-refine"], "self-refine", sr_turns, first_turn=first,
                progress=progress, chunk=chunk)
    frames = {"cocos": rows_frame(out / FILES["cocos"], tasks, turns)}
    if not skip_self_refine:
        frames["self-refine"] = rows_frame(out / FILES["self-refine"], sr_tasks, sr_turns)
    for name, df in frames.items():
        E.write_rows(df, out / FILES[name])  # sorted, complete
    source = registry_models.fetched_dir(model) if model in registry_models.REGISTRY else None
    marker = json.loads((source / registry_models.MARKER).read_text()) if source else {}
    command = "python -m cocos_lib.evaluation.study " + " ".join(argv if argv is not None else sys.argv[1:])
    meta = dict(command=command, commands=meta.get("commands", []) + [command],
                model=model, model_sha256=marker.get("sha256"), model_source=marker.get("wheels"),
                upstream=marker.get("upstream"), tasks="humaneval", n_tasks=len(tasks), turns=turns, sr_turns=sr_turns,
                sr_tasks=None if skip_self_refine else len(sr_tasks),
                prompt_format="chat", greedy=True, max_new_tokens=max_new_tokens, batch_size=batch_size, chunk=chunk,
                backend=backend, dtype="fp32", device="cpu", torch_threads=torch.get_num_threads(),
                no_edit_threshold=M.DEFAULT_NO_EDIT_THRESHOLD, wall_s={k: round(v, 1) for k, v in wall.items()},
                date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                versions=versions(), summary={k: _clean(E.summarize(df)) for k, df in frames.items()},
                edit_histogram=edit_histogram(frames["cocos"]),
                note="self-refine turn 1 = simple prompting's turn 1 (same greedy answer to the same prompt)",
                notes=meta.get("notes", []))  # provenance written by hand is kept across resumes
    meta_path.write_text(json.dumps(meta, indent=1))
    (out / "study_examples.json").write_text(json.dumps(pick_examples(frames["cocos"]), indent=1))
    return meta


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cocos_lib.evaluation.study", description=__doc__.split("\n")[0])
    p.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    p.add_argument("--out", default="data/results/real")
    p.add_argument("--turns", type=int, default=4)
    p.add_argument("--sr-turns", type=int, default=2)
    p.add_argument("--limit", type=int, default=None, help="only the first N HumanEval tasks")
    p.add_argument("--batch-size", type=int, default=64, help="rows decoded together")
    p.add_argument("--chunk", type=int, default=164, help="tasks per generation call (rows written per chunk)")
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--backend", default="packed", choices=["hf", "static", "packed"],
                   help="generation backend (packed: continuous batching, the fast one on a CPU)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--workers", type=int, default=2, help="executor workers")
    p.add_argument("--skip-self-refine", action="store_true")
    p.add_argument("--sr-limit", type=int, default=None, help="Self-Refine on the first N tasks only")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if not 1 <= args.turns <= E.MAX_TURNS or not 2 <= args.sr_turns <= E.MAX_TURNS:
        p.error(f"--turns must be in 1..{E.MAX_TURNS} and --sr-turns in 2..{E.MAX_TURNS}")
    meta = run_study(args.model, args.out, args.turns, args.sr_turns, args.limit, args.batch_size, args.chunk,
                     args.max_new_tokens, args.backend, args.threads, args.workers, args.skip_self_refine,
                     not args.no_progress, argv=list(argv) if argv is not None else sys.argv[1:], sr_limit=args.sr_limit)
    print(json.dumps(meta["summary"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
