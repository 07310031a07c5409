"""Multi-turn evaluation (docs/paper.md §5 "Evaluation"): greedy or sampled, up to 4 turns.

``evaluate`` produces turns with the method's entry of ``methods.TURNS`` (method "cocos": the correction
instruction, i.e. simple prompting for an untrained model; "self-refine"; the release format's pipeline) and
returns a DataFrame with one row per (task, sample, turn); ``summarize`` (owned by ``cocos_lib.summary``, importable
from here) turns it into every metric of the paper's tables (fractions in [0, 1]); see
``cocos_lib.metrics`` for the definitions.

CLI: python -m cocos_lib.evaluate --policy DIR_OR_NAME --tasks NAME --turns T --out FILE
(DIR may be a run directory of cocos_lib.train: its final/ model, else its last checkpoint's).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
from safetensors import SafetensorError, safe_open
from tqdm.auto import tqdm

from cocos_lib import metrics as M
from cocos_lib import prompts, registry_models
from cocos_lib.release import authors as release
from cocos_lib.release import pipeline as release_run
from cocos_lib.executor import open_executor
from cocos_lib.metrics import transition_metrics
from cocos_lib.prompts import DONE, fewshot_for
from cocos_lib.sampling import SamplingConfig
from cocos_lib.summary import accuracy_gains, by_turn, edit_distances, summarize, transition_matrices
from cocos_lib.task_sets import load_tasks
from cocos_lib.toy.warmstart import TINY_WARMSTART, warmstart_path

# torch is imported only where a model runs (methods, rollout, models: inside _run, _rollout_config, _load): a bad
# CLI argument fails in one line without the seconds of a torch import, and reading / summarising rows needs no torch.

__all__ = ["METHODS", "MAX_TURNS", "COLUMNS", "EvalConfigError", "cache_key", "evaluate", "trajectory_rows",
           "write_rows", "read_rows", "by_turn", "transition_matrices", "accuracy_gains", "edit_distances", "summarize",
           "transition_metrics", "run_model_dir", "run_prompt_settings", "damaged_weights",
           "main"]  # transition_metrics: a contract (DESIGN.md), in metrics

METHODS = ("cocos", "self-refine")
PROMPT_FORMATS = (*prompts.PROMPT_FORMATS, "release")  # prompts.py (paper / chat template) | release.py (authors' test.py)
MAX_TURNS = 4
COLUMNS = ("task_id", "sample", "turn", "method", "code", "outcomes", "n_tests", "n_passed", "pass_fraction",
           "correct", "reward", "edit_distance", "no_edit", "new_tokens", "error", "text", "feedback")


class EvalConfigError(ValueError):
    """A bad evaluate() argument (turns, k, method ...), one line."""


def _check(turns: int, k: int, method: str, greedy: bool, prompt_format: str = "completion") -> None:
    if not 1 <= turns <= MAX_TURNS:
        raise EvalConfigError(f"evaluate: field 'turns': {turns} is outside 1..{MAX_TURNS}")
    if k < 1:
        raise EvalConfigError(f"evaluate: field 'k': {k} samples per task, need >= 1")
    if k > 1 and greedy:
        raise EvalConfigError(f"evaluate: field 'k': k={k} greedy samples would be identical; sample instead")
    if method not in METHODS:
        raise EvalConfigError(f"evaluate: field 'method': unknown method {method!r} (expected one of {', '.join(METHODS)})")
    if prompt_format not in PROMPT_FORMATS:
        raise EvalConfigError(f"evaluate: field 'prompt_format': unknown format {prompt_format!r} "
                              f"(expected one of {', '.join(PROMPT_FORMATS)})")
    if prompt_format == "release" and method != "cocos":
        raise EvalConfigError(f"evaluate: field 'method': the release format has no {method!r} prompts (use 'cocos')")


def _fingerprint(name: str) -> str:
    """Policy name plus, for a local dir, the newest file time (a retrained dir misses the cache)."""
    if name == TINY_WARMSTART:
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
             prompt_format: str = "completion", extraction: str = "lenient") -> pd.DataFrame:
    """Run ``turns`` turns on every task (k samples each) and return one row per task, sample, turn.

    policy: a ``models.Policy``, or a name / dir (loaded only on a cache miss).
    sampling: a ``generation.SamplingConfig``; it wins over ``greedy``. Default: greedy, 512 tokens.
    k > 1 samples are independent at every turn (share_first_turn=False), as pass@k needs.
    chunk: tasks per ``rollout`` call (progress granularity; default sampling.batch_size).
    cache: a directory; the result is stored as ``eval-<key>.jsonl`` keyed by policy, tasks and
    every setting here, and read back instead of re-running.
    prompt_format: "completion" (the paper's prompts, `fewshot` and `ending` as given), "chat" (instruct
    models: chat template, answer pre-filled with "```python\n" and stopped at "```"; see cocos_lib.prompts)
    or "release" (release.py: the
    authors' evaluation prompts and extraction; `fewshot` is the release's block or "", `ending`
    follows from it; a policy given by name is loaded by release_run.load, stand-ins included).
    extraction: prompts.EXTRACTIONS, "lenient" (extract_code) or "release" (the release's code_process;
    the "release" format always uses the release's own).
    Columns: task_id, sample, turn (1..T), method, code, outcomes (list), n_tests, n_passed,
    pass_fraction, correct (all tests pass), reward (r_t), edit_distance (normalised
    Levenshtein to turn t-1's code; NaN at t=1), no_edit (edit_distance <= threshold),
    new_tokens, error, text (raw completion), feedback (Self-Refine critique, else "").
    """
    _check(turns, k, method, sampling.greedy if sampling is not None else greedy, prompt_format)
    cfg = sampling if sampling is not None else SamplingConfig(greedy=greedy)
    # the release format has its own prompts and extraction (release_run); the rollout config carries the rest
    rcfg = _rollout_config(turns, k, cfg, fewshot, ending, backend, reward,
                           "completion" if prompt_format == "release" else prompt_format, extraction)
    tasks, chunk = list(tasks), chunk or cfg.batch_size
    name = policy if isinstance(policy, (str, Path)) else policy.name
    settings = dict(turns=turns, k=k, sampling=asdict(cfg), method=method, fewshot=fewshot, ending=ending,
                    backend=backend, reward=reward, seed=seed, chunk=chunk, threshold=no_edit_threshold)
    if prompt_format != "completion":  # only then: earlier caches keep their keys
        settings["prompt_format"] = prompt_format
    if extraction != "lenient":
        settings["extraction"] = extraction
    if prompt_format == "release" and isinstance(policy, (str, Path)):
        name = release_run.source(str(name))
    path = Path(cache) / f"eval-{cache_key(str(name), [t.task_id for t in tasks], settings)}.jsonl" if cache else None
    if path is not None and path.is_file():
        return read_rows(path)
    if isinstance(policy, (str, Path)):
        policy = _load(str(policy), prompt_format)
    df = _run(policy, tasks, rcfg, executor, progress, method, seed, chunk, no_edit_threshold, prompt_format)
    if path is not None:
        write_rows(df, path)
    return df


def _load(name: str, prompt_format: str, **kw):
    """The policy `name`: release_run.load for the release format (its pad token, stand-ins), else models.load_policy."""
    if prompt_format == "release":
        return release_run.load(name, **kw)
    from cocos_lib.models import load_policy  # torch: see the note at the imports
    return load_policy(name, **kw)


def _rollout_config(turns, k, cfg, fewshot, ending, backend, reward, prompt_format, extraction="lenient"):
    from cocos_lib.rollout import RolloutConfig  # torch: see the note at the imports
    try:
        return RolloutConfig(turns=turns, k=k, share_first_turn=False, reward=reward, sampling=cfg, fewshot=fewshot,
                             ending=ending, backend=backend, prompt_format=prompt_format, extraction=extraction)
    except ValueError as e:
        raise EvalConfigError(f"evaluate: {e}") from None


def _run(policy, tasks, rcfg, executor, progress, method, seed, chunk, threshold,
         prompt_format="completion") -> pd.DataFrame:
    from cocos_lib.methods import producer  # torch: see the note at the imports
    produce = producer(method, prompt_format)  # how this method produces turns (methods.TURNS)
    turns = rcfg.turns
    own = executor is None
    ex = open_executor() if own else executor
    rows: list[dict] = []
    try:
        bar = tqdm(total=len(tasks), desc=f"evaluate {method} ({turns} turns)", disable=not progress, unit="task")
        for start in range(0, len(tasks), chunk):
            part = tasks[start:start + chunk]
            trajs, fb = produce(policy, part, rcfg, ex, seed + start)
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


# ------------------------------------------------------------------------------------ CLI

def run_model_dir(path: str | Path) -> Path | None:
    """The model of a `cocos_lib.train` run directory (it holds metrics.jsonl, checkpoint/ or final/):
    RUN/final, else the last checkpoint's RUN/checkpoint/model (RUN/checkpoint.old/model after a cut
    swap); None for any other path. Raises EvalConfigError for a run directory with neither."""
    run = Path(path).expanduser()
    if not run.is_dir() or not any((run / f).exists() for f in ("metrics.jsonl", "checkpoint", "final")):
        return None
    for model in (run / "final", run / "checkpoint" / "model", run / "checkpoint.prev" / "model",
                  run / "checkpoint.old" / "model"):
        if (model / "config.json").is_file() or (model / "adapter_config.json").is_file():
            return model
    raise EvalConfigError(f"{run} is a training run directory without a model yet (no final/ or checkpoint/model)")


PROMPT_SETTINGS = ("fewshot", "ending", "prompt_format", "extraction")  # what a run's config.json tells evaluate


def run_prompt_settings(path: str | Path) -> dict:
    """The prompt settings a `cocos_lib.train` run was trained with (PROMPT_SETTINGS from RUN/config.json, the
    ones it holds); {} for a path that is not a run dir with a config.json."""
    cfg = Path(path).expanduser() / "config.json"
    if run_model_dir(path) is None or not cfg.is_file():
        return {}
    try:
        saved = json.loads(cfg.read_text())
    except ValueError as e:
        raise EvalConfigError(f"{cfg}: not valid JSON ({e})") from None
    return {k: saved[k] for k in PROMPT_SETTINGS if k in saved}


def damaged_weights(model_dir: str | Path) -> str | None:
    """The first *.safetensors file of a local model dir whose header or size is wrong (a cut copy or save),
    as "FILE: what is wrong"; None when every one opens (or the dir holds none)."""
    for f in sorted(Path(model_dir).expanduser().glob("*.safetensors")):
        try:
            with safe_open(str(f), "pt"):
                pass
        except (SafetensorError, OSError) as e:
            return f"{f}: damaged or truncated ({str(e).splitlines()[0]})"
    return None


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
    p.add_argument("--policy", required=True, help="model dir, a train run dir (its final/ or last checkpoint), "
                   "HF hub name, or 'tiny-warmstart'")
    p.add_argument("--tasks", required=True, help="task set: mbpp-test, humaneval-release (the paper's HumanEval "
                   "format), humaneval (signature and docstring shown: not comparable to the paper), toy-test, ...")
    p.add_argument("--turns", type=int, default=2, help=f"turns per task, 1..{MAX_TURNS} (default 2)")
    p.add_argument("--out", required=True, help="output JSONL file (one object per task, sample and turn)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N tasks")
    p.add_argument("--method", choices=METHODS, default="cocos",
                   help="cocos: correction instruction (simple prompting); self-refine: critique then rewrite")
    p.add_argument("--k", type=int, default=1, help="samples per task (k > 1 samples at --temperature; pass@k)")
    p.add_argument("--temperature", type=float, default=0.9, help="sampling temperature when k > 1")
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=None, help="default 64; 8 with --format release (as released)")
    p.add_argument("--fewshot", type=int, default=None, help="N solved examples before turn 1 (base models): MBPP "
                   "prompt split for mbpp-*, else the offline default (0, or a train run's; --format release: 3 for a "
                   "released base)")
    p.add_argument("--ending", choices=("correct", "begin"), default=None,
                   help="turn >= 2 prompt ending (default: a train run's, else correct)")
    p.add_argument("--prompt-format", "--format", choices=PROMPT_FORMATS, default=None, dest="prompt_format",
                   help="completion: the paper's prompts (base models, as trained); chat: the chat template "
                        "(instruct models); release: the authors' test.py (cocos_lib/release/authors.py). Default: a "
                        "train run's, else completion")
    p.add_argument("--extraction", choices=prompts.EXTRACTIONS, default=None,
                   help="lenient: fenced blocks, prose skipped; release: the release's code_process (default: a "
                        "train run's, else lenient)")
    p.add_argument("--stop-at-done", action="store_true", help="--format release: stop rows at [DONE] too (same code)")
    p.add_argument("--backend", default="hf", help="generation backend: hf, static, vllm")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default=None, help="cache directory (re-use an identical earlier run)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return p


def main(argv: Sequence[str] | None = None, *, tasks_of: Callable = load_tasks, load: Callable = _load,
         fewshot_of: Callable = fewshot_for, run: Callable = evaluate) -> dict:
    """The CLI. tasks_of(name), load(path, prompt_format, dtype=, device=), fewshot_of(task_set, n) and run (as
    `evaluate`) are what it calls; tests pass stand-ins instead of patching modules."""
    args = _parser().parse_args(argv)
    if not 1 <= args.turns <= MAX_TURNS:
        _fail(f"--turns {args.turns}: must be in 1..{MAX_TURNS}")
    if args.limit is not None and args.limit < 1:
        _fail(f"--limit {args.limit}: must be >= 1")
    if args.k < 1:
        _fail(f"--k {args.k}: must be >= 1")
    try:  # a train run dir: its prompt settings unless given here
        trained = run_prompt_settings(args.policy)
    except EvalConfigError as e:
        _fail(f"--policy {args.policy}: {e}")
    args.prompt_format = args.prompt_format or trained.get("prompt_format", "completion")
    args.ending = args.ending or trained.get("ending", "correct")
    args.extraction = args.extraction or trained.get("extraction", "lenient")
    args.fewshot = trained.get("fewshot") if args.fewshot is None else args.fewshot
    release_format = args.prompt_format == "release"
    if args.stop_at_done and not release_format:
        _fail("--stop-at-done: only with --format release (the repo format always stops at [DONE])")
    try:
        tasks = tasks_of(args.tasks)
    except (ValueError, OSError) as e:
        _fail(f"--tasks {args.tasks}: {str(e).splitlines()[0]}")
    tasks = tasks[:args.limit] if args.limit else tasks
    if args.policy.startswith(("/", ".", "~")) and not Path(args.policy).expanduser().exists():
        _fail(f"--policy {args.policy}: no such local directory")  # before the slow torch import
    try:
        policy_path = str(run_model_dir(args.policy) or args.policy)  # a train run dir: its final/ model
    except EvalConfigError as e:
        _fail(f"--policy {args.policy}: {e}")
    damaged = damaged_weights(policy_path) if Path(policy_path).expanduser().is_dir() else None
    if damaged:
        _fail(f"--policy {args.policy}: {damaged}; copy the file again, or for a train run dir delete its final/ to "
              "evaluate the last checkpoint (checkpoint/model), or rerun training")
    from cocos_lib.models import resolve_model  # torch: see the note at the imports
    batch_size = args.batch_size or (release.BATCH_SIZE if release_format else 64)
    try:
        resolve_model(release_run.source(policy_path) if release_format else policy_path)
        sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                  greedy=args.k == 1, batch_size=batch_size,
                                  stop=None if release_format and not args.stop_at_done else DONE)
    except (ValueError, OSError) as e:
        _fail(f"--policy {args.policy}: {str(e).splitlines()[0]}" if isinstance(e, OSError) else str(e))
    try:
        fewshot = (release_run.fewshot_for(args.policy, args.tasks, args.fewshot) if release_format
                   else fewshot_of(args.tasks, args.fewshot or 0))
    except (ValueError, OSError) as e:
        _fail(f"--fewshot {args.fewshot}: {str(e).splitlines()[0]}")
    policy = load(policy_path, args.prompt_format, dtype=args.dtype, device=args.device)  # release: its pad token
    df = run(policy, tasks, turns=args.turns, k=args.k, sampling=sampling, cache=args.cache,
             progress=not args.no_progress, method=args.method, fewshot=fewshot, ending=args.ending,
             backend=args.backend, seed=args.seed, prompt_format=args.prompt_format, extraction=args.extraction)
    write_rows(df, args.out)
    summary = {"policy": args.policy, "tasks": args.tasks, "format": args.prompt_format,
               "fewshot": args.fewshot or 0, "ending": args.ending, "extraction": args.extraction, **summarize(df)}
    print(json.dumps({k: (None if math.isnan(v) else round(v, 6)) if isinstance(v, float) else v
                      for k, v in summary.items()}))
    return summary


if __name__ == "__main__":
    main()
