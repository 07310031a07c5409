"""Multi-turn evaluation (PAPER.md "Evaluation"): greedy or sampled, up to 4 turns.

``evaluate`` runs ``rollout`` (method "cocos": the correction instruction, i.e. simple
prompting for an untrained model) or ``baselines.self_refine`` and returns a DataFrame
with one row per (task, sample, turn); ``summarize`` turns it into every metric of the
paper's tables (fractions in [0, 1]); see ``cocos_lib.metrics`` for the definitions.

CLI: python -m cocos_lib.evaluate --policy DIR_OR_NAME --tasks NAME --turns T --out FILE
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import pandas as pd

from cocos_lib import metrics as M
from cocos_lib import registry_models

METHODS = ("cocos", "self-refine")
MAX_TURNS = 4
COLUMNS = ("task_id", "sample", "turn", "method", "code", "outcomes", "n_tests", "n_passed", "pass_fraction",
           "correct", "reward", "edit_distance", "no_edit", "new_tokens", "error", "text", "feedback")


class EvalConfigError(ValueError):
    """A bad evaluate() argument (turns, k, method ...), one line."""


def _check(turns: int, k: int, method: str, greedy: bool) -> None:
    if not 1 <= turns <= MAX_TURNS:
        raise EvalConfigError(f"evaluate: field 'turns': {turns} is outside 1..{MAX_TURNS}")
    if k < 1:
        raise EvalConfigError(f"evaluate: field 'k': {k} samples per task, need >= 1")
    if k > 1 and greedy:
        raise EvalConfigError(f"evaluate: field 'k': k={k} greedy samples would be identical; sample instead")
    if method not in METHODS:
        raise EvalConfigError(f"evaluate: field 'method': unknown method {method!r} (expected one of {', '.join(METHODS)})")


def _fingerprint(name: str) -> str:
    """Policy name plus, for a local dir, the newest file time (a retrained dir misses the cache)."""
    if name == "tiny-warmstart":
        from cocos_lib.toy import warmstart_path
        name = str(warmstart_path())
    if name in registry_models.REGISTRY:
        name = str(registry_models.model_dir(name))
    p = Path(name).expanduser()
    if p.is_dir():
        return f"{p.resolve()}@{max((f.stat().st_mtime_ns for f in p.iterdir() if f.is_file()), default=0)}"
    return name


def cache_key(policy_name: str, task_ids: Sequence[str], settings: dict) -> str:
    blob = json.dumps({"policy": _fingerprint(policy_name), "tasks": list(task_ids), **settings},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def evaluate(policy, tasks: Sequence, turns: int = 2, k: int = 1, greedy: bool = True, sampling=None,
             executor=None, cache: str | Path | None = None, progress: bool = True, method: str = "cocos",
             fewshot: str = "", ending: str = "correct", backend: str = "hf", reward: str = "progressive",
             seed: int = 0, chunk: int | None = None, no_edit_threshold: float = M.DEFAULT_NO_EDIT_THRESHOLD,
             prompt_format: str = "completion") -> pd.DataFrame:
    """Run ``turns`` turns on every task (k samples each) and return one row per task, sample, turn.

    policy: a ``models.Policy``, or a name / dir (loaded only on a cache miss).
    sampling: a ``generation.SamplingConfig``; it wins over ``greedy``. Default: greedy, 512 tokens.
    k > 1 samples are independent at every turn (share_first_turn=False), as pass@k needs.
    chunk: tasks per ``rollout`` call (progress granularity; default sampling.batch_size).
    prompt_format: "completion" (the paper's prompts) or "chat" (instruct models: chat template,
    answer pre-filled with "```python\n" and stopped at "```"; see cocos_lib.prompts).
    cache: a directory; the result is stored as ``eval-<key>.jsonl`` keyed by policy, tasks and
    every setting here, and read back instead of re-running.
    Columns: task_id, sample, turn (1..T), method, code, outcomes (list), n_tests, n_passed,
    pass_fraction, correct (all tests pass), reward (r_t), edit_distance (normalised
    Levenshtein to turn t-1's code; NaN at t=1), no_edit (edit_distance <= threshold),
    new_tokens, error, text (raw completion), feedback (Self-Refine critique, else "").
    """
    _check(turns, k, method, sampling.greedy if sampling is not None else greedy)
    from cocos_lib.generation import SamplingConfig
    cfg = sampling if sampling is not None else SamplingConfig(greedy=greedy)
    rcfg = _rollout_config(turns, k, cfg, fewshot, ending, backend, reward, prompt_format)
    tasks, chunk = list(tasks), chunk or cfg.batch_size
    name = policy if isinstance(policy, (str, Path)) else policy.name
    settings = dict(turns=turns, k=k, sampling=asdict(cfg), method=method, fewshot=fewshot, ending=ending,
                    backend=backend, reward=reward, seed=seed, chunk=chunk, threshold=no_edit_threshold)
    if prompt_format != "completion":  # keeps the keys of earlier completion-format caches valid
        settings["prompt_format"] = prompt_format
    path = Path(cache) / f"eval-{cache_key(str(name), [t.task_id for t in tasks], settings)}.jsonl" if cache else None
    if path is not None and path.is_file():
        return read_rows(path)
    if isinstance(policy, (str, Path)):
        from cocos_lib.models import load_policy
        policy = load_policy(policy)
    df = _run(policy, tasks, rcfg, executor, progress, method, seed, chunk, no_edit_threshold)
    if path is not None:
        write_rows(df, path)
    return df


def _rollout_config(turns, k, cfg, fewshot, ending, backend, reward, prompt_format):
    from cocos_lib.rollout import RolloutConfig
    try:
        return RolloutConfig(turns=turns, k=k, share_first_turn=False, reward=reward, sampling=cfg, fewshot=fewshot,
                             ending=ending, backend=backend, prompt_format=prompt_format)
    except ValueError as e:
        raise EvalConfigError(f"evaluate: {e}") from None


def _run(policy, tasks, rcfg, executor, progress, method, seed, chunk, threshold) -> pd.DataFrame:
    from tqdm.auto import tqdm

    from cocos_lib import baselines
    from cocos_lib.executor import Executor
    from cocos_lib.rollout import rollout
    turns = rcfg.turns
    own = executor is None
    ex = Executor() if own else executor
    rows: list[dict] = []
    try:
        bar = tqdm(total=len(tasks), desc=f"evaluate {method} ({turns} turns)", disable=not progress, unit="task")
        for start in range(0, len(tasks), chunk):
            part = tasks[start:start + chunk]
            if method == "self-refine":
                trajs, fb = baselines.self_refine(policy, part, rcfg, ex, seed=seed + start)
            else:
                trajs, fb = rollout(policy, part, rcfg, ex, seed=seed + start), None
            for i, tr in enumerate(trajs):
                rows.extend(trajectory_rows(tr, method, threshold, fb[i] if fb else None))
            bar.update(len(part))
        bar.close()
    finally:
        if own:
            ex.close()
    return _frame(rows)


def trajectory_rows(traj, method: str = "cocos", threshold: float = M.DEFAULT_NO_EDIT_THRESHOLD,
                    feedback: Sequence[tuple[str, int]] | None = None) -> list[dict]:
    """One row dict per turn of a ``rollout.Trajectory`` (see ``evaluate`` for the columns)."""
    rows, prev = [], None
    for t, turn in enumerate(traj.turns, start=1):
        fb = feedback[t - 2] if feedback and t >= 2 else ("", 0)
        rows.append(turn_row(traj.task.task_id, traj.sample, t, turn, prev, method, threshold, fb))
        prev = turn.code
    return rows


def turn_row(task_id: str, sample: int, t: int, turn, previous_code: str | None, method: str = "cocos",
             threshold: float = M.DEFAULT_NO_EDIT_THRESHOLD, feedback: tuple[str, int] = ("", 0)) -> dict:
    """The row of turn t (a ``rollout.Turn``); edit distance to ``previous_code`` (None at t = 1)."""
    ed = math.nan if previous_code is None else M.normalized_edit_distance(previous_code, turn.code)
    outcomes = list(turn.report.outcomes)
    return dict(task_id=task_id, sample=sample, turn=t, method=method, code=turn.code, outcomes=outcomes,
                n_tests=len(outcomes), n_passed=sum(o == "passed" for o in outcomes),
                pass_fraction=turn.report.fraction, correct=bool(turn.report.all_passed),
                reward=float(turn.reward), edit_distance=ed,
                no_edit=None if previous_code is None else bool(ed <= threshold),
                new_tokens=len(turn.completion_ids) + feedback[1], error=turn.report.error,
                text=turn.text, feedback=feedback[0])


def _frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df["no_edit"] = df["no_edit"].astype("boolean")
    df["edit_distance"] = df["edit_distance"].astype(float)
    return df.sort_values(["task_id", "sample", "turn"], kind="stable").reset_index(drop=True)


def write_rows(df: pd.DataFrame, path: str | Path) -> Path:
    """One JSON object per row (task, sample, turn); NaN / NA become null."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for rec in df.astype(object).where(df.notna(), None).to_dict(orient="records"):
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return path


def read_rows(path: str | Path) -> pd.DataFrame:
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    for r in rows:
        r["edit_distance"] = math.nan if r.get("edit_distance") is None else r["edit_distance"]
    return _frame(rows)


# ------------------------------------------------------------------------ metrics from rows

def by_turn(df: pd.DataFrame, column: str = "correct") -> list[list]:
    """``column`` per turn, aligned over problems (task_id, sample): result[t-1][i]."""
    wide = df.pivot(index=["task_id", "sample"], columns="turn", values=column).sort_index()
    return [wide[t].tolist() for t in sorted(wide.columns)]


def transition_matrices(df: pd.DataFrame) -> dict[str, dict[str, float]]:
    """{"t1→t2": {c2c, c2i, i2c, i2i}, "t2→t3": ...} for the plots."""
    cols = by_turn(df)
    return {f"t{t}→t{t + 1}": M.transition_matrix(cols[t - 1], cols[t]) for t in range(1, len(cols))}


def accuracy_gains(df: pd.DataFrame) -> list[float]:
    """[Acc@tk - Acc@t1 for k = 1..T] (first entry 0), for ``plots.plot_accuracy_gains``."""
    return M.accuracy_gains(by_turn(df))


def edit_distances(df: pd.DataFrame, turn: int = 2) -> dict[str, list[float]]:
    """Edit distances turn-1 -> turn, split by whether the answer at ``turn`` is wrong / right."""
    rows = df[df["turn"] == turn]
    return {"answer wrong": rows.loc[~rows["correct"].astype(bool), "edit_distance"].tolist(),
            "answer right": rows.loc[rows["correct"].astype(bool), "edit_distance"].tolist()}


def summarize(df: pd.DataFrame, threshold: float = M.DEFAULT_NO_EDIT_THRESHOLD) -> dict:
    """Every metric as a flat dict of fractions (keys used by ``tables.compare``):

    acc_t{t}; for t1 -> t2: delta, i2c, c2i (transition_metrics), unit_i2c / unit_c2i (share
    of problems whose passed-test count rose / fell), unit_f2p / unit_p2f (per-test share),
    no_edit_rate (turn 2 vs 1, distance <= threshold), no_edit_rate_wrong (same, among wrong
    turn-2 answers), mean_edit_distance; gain_t{k} = Acc@tk - Acc@t1; t{t}_t{t+1}_{c2c,..}
    per turn pair; mean_new_tokens_t{t}; with k > 1 samples: pass@1_t{t} and pass@{k}_t{t}.
    """
    correct = by_turn(df)
    out: dict = {"method": str(df["method"].iloc[0]), "n_tasks": int(df["task_id"].nunique()),
                 "n_problems": len(correct[0]), "turns": len(correct)}
    out.update({f"acc_t{t}": a for t, a in enumerate(M.accuracy_by_turn(correct), start=1)})
    if len(correct) >= 2:
        out.update(M.transition_metrics(correct[0], correct[1]))
        passed = [[[o == "passed" for o in outs] for outs in col] for col in by_turn(df, "outcomes")[:2]]
        unit = M.unit_count_transitions(passed[0], passed[1])
        out["unit_i2c"], out["unit_c2i"] = unit["rose"], unit["fell"]
        out.update({f"unit_{k}": v for k, v in M.unit_test_transitions(passed[0], passed[1]).items()})
        dist = by_turn(df, "edit_distance")[1]
        out["no_edit_rate"] = M.no_edit_rate(dist, threshold)
        out["no_edit_rate_wrong"] = M.no_edit_rate(dist, threshold, wrong=[not c for c in correct[1]])
        out["mean_edit_distance"] = sum(dist) / len(dist)
        out.update({f"gain_t{t}": g for t, g in enumerate(M.accuracy_gains(correct), start=1) if t >= 2})
        for pair, m in transition_matrices(df).items():
            a, b = pair.replace("→", "_").split("_")
            out.update({f"{a}_{b}_{key}": v for key, v in m.items()})
    for t, toks in enumerate(by_turn(df, "new_tokens"), start=1):
        out[f"mean_new_tokens_t{t}"] = sum(toks) / len(toks)
    k = int(df.groupby("task_id")["sample"].nunique().min())
    if k > 1:
        for t in range(1, len(correct) + 1):
            per = df[df["turn"] == t].groupby("task_id")["correct"].agg(["size", "sum"])
            for j in sorted({1, k}):
                out[f"pass@{j}_t{t}"] = M.mean_pass_at_k(per["size"].tolist(), per["sum"].astype(int).tolist(), j)
    return out


# ------------------------------------------------------------------------------------ CLI

class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one clear line, exit code 2 (argparse's default prints usage too)
        _fail(message)


def _fail(message: str) -> None:
    print(f"cocos_lib.evaluate: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m cocos_lib.evaluate",
                description="Multi-turn evaluation: writes one JSON object per task and turn to --out "
                            "and prints the summary metrics as one JSON line on stdout.")
    p.add_argument("--policy", required=True, help="model dir, HF hub name, or 'tiny-warmstart'")
    p.add_argument("--tasks", required=True, help="task set: mbpp-test, humaneval, toy-test, ...")
    p.add_argument("--turns", type=int, default=2, help=f"turns per task, 1..{MAX_TURNS} (default 2)")
    p.add_argument("--out", required=True, help="output JSONL file (one object per task, sample and turn)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N tasks")
    p.add_argument("--method", choices=METHODS, default="cocos",
                   help="cocos: correction instruction (simple prompting); self-refine: critique then rewrite")
    p.add_argument("--k", type=int, default=1, help="samples per task (k > 1 samples at --temperature; pass@k)")
    p.add_argument("--temperature", type=float, default=0.9, help="sampling temperature when k > 1")
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--fewshot", type=int, default=0, help="prepend N solved examples to turn 1 (base models): "
                   "MBPP prompt split for mbpp-* tasks, else the shipped offline default")
    p.add_argument("--ending", choices=("correct", "begin"), default="correct", help="turn >= 2 prompt ending")
    p.add_argument("--prompt-format", choices=("completion", "chat"), default="completion",
                   help="completion: the paper's prompts (base models); chat: the chat template (instruct models)")
    p.add_argument("--backend", default="hf", help="generation backend: hf, static, vllm")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default=None, help="cache directory (re-use an identical earlier run)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    args = _parser().parse_args(argv)
    if not 1 <= args.turns <= MAX_TURNS:
        _fail(f"--turns {args.turns}: must be in 1..{MAX_TURNS}")
    if args.limit is not None and args.limit < 1:
        _fail(f"--limit {args.limit}: must be >= 1")
    if args.k < 1:
        _fail(f"--k {args.k}: must be >= 1")
    from cocos_lib.tasks import load_tasks
    try:
        tasks = load_tasks(args.tasks)
    except (ValueError, OSError) as e:
        _fail(f"--tasks {args.tasks}: {str(e).splitlines()[0]}")
    tasks = tasks[:args.limit] if args.limit else tasks
    if args.policy.startswith(("/", ".", "~")) and not Path(args.policy).expanduser().exists():
        _fail(f"--policy {args.policy}: no such local directory")  # before the slow torch import
    from cocos_lib.generation import SamplingConfig
    from cocos_lib.models import load_policy, resolve_model
    try:
        resolve_model(args.policy)
        sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                  greedy=args.k == 1, batch_size=args.batch_size)
    except (ValueError, OSError) as e:
        _fail(f"--policy {args.policy}: {str(e).splitlines()[0]}" if isinstance(e, OSError) else str(e))
    from cocos_lib.prompts import fewshot_for
    try:
        fewshot = fewshot_for(args.tasks, args.fewshot)
    except (ValueError, OSError) as e:
        _fail(f"--fewshot {args.fewshot}: {str(e).splitlines()[0]}")
    policy = load_policy(args.policy, dtype=args.dtype, device=args.device)
    df = evaluate(policy, tasks, turns=args.turns, k=args.k, sampling=sampling, cache=args.cache,
                  progress=not args.no_progress, method=args.method, fewshot=fewshot, ending=args.ending,
                  backend=args.backend, seed=args.seed, prompt_format=args.prompt_format)
    write_rows(df, args.out)
    summary = {"policy": args.policy, "tasks": args.tasks, **summarize(df)}
    print(json.dumps({k: (None if math.isnan(v) else round(v, 6)) if isinstance(v, float) else v
                      for k, v in summary.items()}))
    return summary


if __name__ == "__main__":
    main()
