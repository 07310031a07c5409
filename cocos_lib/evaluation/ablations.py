"""Ablation runs for notebook 05: each setting changes one CoCoS choice, trained with several
seeds in the toy world and evaluated greedily (2 turns) on one fixed toy-test subset.

    python -m cocos_lib.evaluation.ablations run --out data/results/ablations [--updates 30 --seeds 0 1 2 ...]
    python -m cocos_lib.evaluation.ablations run --out /tmp/smoke --updates 1 --prompts-per-update 2 --n-eval 2 --seeds 0
    python -m cocos_lib.evaluation.ablations summary --out data/results/ablations

Settings (docs/paper.md §3 "Rewards", §4 "Objective and optimiser"; all else is the `tiny` profile):
    cocos         the released default: gamma = 0.5, progressive reward, shared turn 1 (turn 2 trained)
    binary        binary reward r_t = 1{all K pass}                      (vs cocos: Table 5)
    indep         independent turn 1, turns 1 and 2 trained, gamma 0.5    (vs cocos: shared vs independent)
    indep-gamma0  the same with gamma = 0                                 (vs indep: turn-1 sabotage)
    score         SCoRe Stage I style: binary, gamma = 1, beta_1 = 0.25   (docs/paper.md §7: turn-2 collapse)
Plus an `untrained` row: the warm-start on the same tasks.

What it writes under OUT (compact, committed; model weights stay in WORK, git-ignored):
    meta.json                       command, sizes, seeds, settings, per-run wall times, versions
    untrained/eval.json             the warm-start's evaluation
    <setting>/seed<s>/metrics.jsonl the training history (HISTORY_KEYS only)
    <setting>/seed<s>/eval.json     {"summary": evaluate.summarize(...), "extra": eval_extras(...), ...}
    summary.json, summary.md        per setting: mean, std, min, max over seeds (`aggregate`), and
                                    the COMPARISONS: difference of means vs spread (`compare`)
Resumable: a run whose eval.json exists is skipped; an interrupted training resumes from WORK.
Guarded: an evaluation with "sandbox worker error" reports, or an update whose every sample
scored 0 on both turns, raises instead of writing (seen once: another process removed the
executor's /dev/shm scratch dir mid-run; the committed set ran with a private /dev/shm,
`unshare -m sh -c 'mount -t tmpfs tmpfs /dev/shm && python -m cocos_lib.evaluation.ablations run ...'`).
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy
import pandas as pd

from cocos_lib.config import make_config
from cocos_lib.evaluate import evaluate, summarize
from cocos_lib.executor import Executor
from cocos_lib.notebook.profile import last_checkpoint
from cocos_lib.sampling import SamplingConfig
from cocos_lib.report.tables import markdown
from cocos_lib.toy.warmstart import TINY_WARMSTART
from cocos_lib.toy.world import toy_tasks

# torch-free at import: cocos_lib.report.results reads SETTINGS / COMPARISONS from here to build the README's tables without
# torch; torch, transformers and the modules that import them (models, train) load inside the functions that train.

SETTINGS: dict[str, tuple[str, dict]] = {
    "cocos": ("CoCoS default (γ=0.5, progressive, shared y_1)", {}),
    "binary": ("binary reward", dict(reward="binary")),
    "indep": ("independent y_1, turns 1+2 trained, γ=0.5", dict(share_first_turn=False, train_turns=(1, 2))),
    "indep-gamma0": ("independent y_1, turns 1+2 trained, γ=0",
                     dict(share_first_turn=False, train_turns=(1, 2), gamma=0.0)),
    "score": ("SCoRe Stage I style (binary, γ=1, β_1=0.25)", dict(reward="binary", gamma=1.0, first_turn_kl_coef=0.25)),
}
UNTRAINED = "untrained"
HISTORY_KEYS = ("update", "reward_t1", "reward_t2", "acc_t1", "acc_t2", "accumulated", "kl", "kl_t1",
                "equal_groups", "grad_norm", "loss", "lr", "tokens", "sec_update", "elapsed")
TABLE_KEYS = ("acc_t1", "acc_t2", "delta", "i2c", "c2i", "unit_i2c", "unit_c2i", "no_edit_rate",
              "unchanged_rate", "partial_wrong_t1", "train_acc1_last5", "train_acc2_last5")
# from metrics.jsonl: mean of the first / last 5 updates, or of all updates. Sampled (T = 0.9).
# train_acc* (all tests pass) compare across reward types; train_r* are in each run's own reward.
HISTORY_STATS = {"train_acc1_first5": ("acc_t1", "first5"), "train_acc1_last5": ("acc_t1", "last5"),
                 "train_acc2_first5": ("acc_t2", "first5"), "train_acc2_last5": ("acc_t2", "last5"),
                 "train_r1_first5": ("reward_t1", "first5"), "train_r1_last5": ("reward_t1", "last5"),
                 "train_r2_first5": ("reward_t2", "first5"), "train_r2_last5": ("reward_t2", "last5"),
                 "train_kl_last5": ("kl", "last5"), "train_equal_groups": ("equal_groups", "all")}
AGG_KEYS = TABLE_KEYS + tuple(k for k in HISTORY_STATS if k not in TABLE_KEYS)
# (a, b, question): notebook 05's comparisons, a's mean minus b's
COMPARISONS = (("cocos", UNTRAINED, "does CoCoS help (vs the warm-start)?"),
               ("binary", "cocos", "binary vs progressive reward"),
               ("indep", "cocos", "independent, trained vs shared turn 1"),
               ("indep-gamma0", "indep", "gamma = 0 vs 0.5, independent turn 1 (turn-1 sabotage)"),
               ("score", "cocos", "SCoRe-style (binary, gamma 1, beta_1 0.25) vs CoCoS"))


@dataclass(frozen=True)
class Sizes:
    """One run's size: RL updates, prompts per update, RLOO group size k, new tokens (training and
    evaluation), the first n_eval toy-test tasks as the evaluation set."""
    updates: int = 30
    prompts_per_update: int = 12
    k: int = 4
    max_new_tokens: int = 64
    n_eval: int = 200


# ------------------------------------------------------------------------------ evaluation

def eval_extras(df) -> dict:
    """Toy-world additions to evaluate.summarize, from an evaluate() frame (2 turns, k = 1):
    partial_wrong_t1 = share of wrong turn-1 answers that pass some but not all tests (where the
    progressive and binary rewards differ); unchanged_rate = share of turn-2 answers identical
    to turn 1 (d = 0, beside summarize's no_edit_rate d <= 0.05); i2c_under_threshold = number of
    wrong -> right repairs with 0 < d <= 0.05 (counted as "no edit" by the paper's threshold)."""
    t1 = df[df["turn"] == 1].set_index(["task_id", "sample"]).sort_index()
    t2 = df[df["turn"] == 2].set_index(["task_id", "sample"]).sort_index()
    wrong = t1[~t1["correct"].astype(bool)]
    partial = (wrong["n_passed"] > 0) & (wrong["n_passed"] < wrong["n_tests"])
    d = t2["edit_distance"].astype(float)
    repaired = ~t1["correct"].astype(bool) & t2["correct"].astype(bool)
    small = (d > 0) & (d <= 0.05)
    return {"partial_wrong_t1": float(partial.mean()) if len(wrong) else math.nan,
            "n_wrong_t1": int(len(wrong)),
            "unchanged_rate": float((d == 0).mean()),
            "n_i2c": int(repaired.sum()),
            "i2c_under_threshold": int((repaired & small).sum()),
            "edited_under_threshold": int(small.sum())}


def evaluate_policy(policy_dir: str, tasks: list, sizes: Sizes, executor) -> dict:
    """Greedy 2-turn evaluation: {"summary": summarize(df), "extra": eval_extras(df)}."""
    from cocos_lib.models import load_policy  # lazy: torch (see the note at the imports)
    policy = load_policy(policy_dir, dtype="fp32", device="cpu")
    sampling = SamplingConfig(greedy=True, max_new_tokens=sizes.max_new_tokens)
    df = evaluate(policy, tasks, turns=2, sampling=sampling, executor=executor, progress=False)
    broken = df["error"].fillna("").str.startswith("sandbox worker error")
    if broken.any():  # the executor failed, not the program: never write such a result
        raise RuntimeError(f"ablations: {int(broken.sum())} executor failures, e.g. {df['error'][broken].iloc[0]}")
    return {"summary": summarize(df), "extra": eval_extras(df)}


# ------------------------------------------------------------------------------ one run

def train_config(setting: str, seed: int, sizes: Sizes):
    """make_config("tiny") with the sizes, the seed and the setting's changes."""
    changes = SETTINGS[setting][1]
    return make_config("tiny", updates=sizes.updates, prompts_per_update=sizes.prompts_per_update, k=sizes.k,
                       max_new_tokens=sizes.max_new_tokens, seed=seed, checkpoint_every=10, **changes)


def trim_history(history: list[dict]) -> list[dict]:
    """Only HISTORY_KEYS, floats rounded to 6 digits."""
    rows = []
    for m in history:
        row = {k: m[k] for k in HISTORY_KEYS if k in m}
        rows.append({k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()})
    return rows


def run_one(setting: str, seed: int, sizes: Sizes, out: Path, work: Path, tasks: list, executor) -> dict:
    """Train (resuming from WORK if interrupted), evaluate, write OUT/<setting>/seed<s>/; return wall times."""
    from cocos_lib.train import train  # lazy: torch (see the note at the imports)
    run_dir = work / setting / f"seed{seed}"
    dest = out / setting / f"seed{seed}"
    t0 = time.time()
    cfg = train_config(setting, seed, sizes)
    history = train(cfg, run_dir, resume=last_checkpoint(run_dir) or False, progress=False)
    dead = [m["update"] for m in history if m["reward_t1"] == 0.0 and m["reward_t2"] == 0.0]
    if dead:  # every sample of an update failing every test: an executor failure, not learning
        raise RuntimeError(f"ablations: {setting}/seed{seed}: updates {dead} have zero rewards; delete {run_dir}")
    t1 = time.time()
    result = evaluate_policy(str(run_dir / "final"), tasks, sizes, executor)
    dest.mkdir(parents=True, exist_ok=True)
    rows = trim_history(history)
    (dest / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result.update(setting=setting, seed=seed, config=cfg.to_dict(), train_s=round(t1 - t0, 1),
                  eval_s=round(time.time() - t1, 1))
    _write_json(dest / "eval.json", result)
    return {"train_s": result["train_s"], "eval_s": result["eval_s"]}


# ------------------------------------------------------------------------------ the set

def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n")
    tmp.replace(path)


def versions() -> dict:
    """Python, library versions and the repo's commit (None outside git)."""
    import torch  # lazy: torch (see the note at the imports)
    import transformers  # lazy: transformers (see the note at the imports)
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=10).stdout.strip() or None
    except OSError:
        commit = None
    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "numpy": numpy.__version__, "platform": platform.platform(), "commit": commit}


def run_all(out: str | Path, work: str | Path, sizes: Sizes = Sizes(), seeds=(0, 1, 2),
            settings=tuple(SETTINGS), threads: int = 1, progress: bool = True, command: str | None = None) -> dict:
    """Every (setting, seed) plus the untrained row; writes as it goes (see the module docstring).
    command: the command line recorded in meta.json (None: keep the recorded one)."""
    import torch  # lazy: see the note at the imports
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        raise ValueError(f"ablations: unknown setting {unknown[0]!r} (expected one of {', '.join(SETTINGS)})")
    torch.set_num_threads(threads)
    out, work = Path(out), Path(work)
    meta_path = out / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {"runs": {}}
    meta.update(command=command or meta.get("command"), sizes=asdict(sizes), seeds=list(seeds), threads=threads,
                settings={s: {"label": SETTINGS[s][0], "changes": SETTINGS[s][1]} for s in settings},
                eval_tasks=f"toy-test[:{sizes.n_eval}]", versions=versions())
    tasks = toy_tasks("test", n=sizes.n_eval)
    t_all = time.time()
    with Executor(workers=2) as executor:
        if not (out / UNTRAINED / "eval.json").is_file():
            t0 = time.time()
            result = evaluate_policy(TINY_WARMSTART, tasks, sizes, executor)
            _write_json(out / UNTRAINED / "eval.json", {**result, "setting": UNTRAINED, "eval_s": time.time() - t0})
        for seed in seeds:  # seed-major: a partial set already has every setting once
            for setting in settings:
                if (out / setting / f"seed{seed}" / "eval.json").is_file():
                    continue
                times = run_one(setting, seed, sizes, out, work, tasks, executor)
                meta["runs"][f"{setting}/seed{seed}"] = times
                _write_json(meta_path, meta)
                if progress:
                    print(f"{setting}/seed{seed}: train {times['train_s']:.0f}s eval {times['eval_s']:.0f}s", flush=True)
    meta["wall_s_last_invocation"] = round(time.time() - t_all, 1)
    _write_json(meta_path, meta)
    return write_summary(out)


# ------------------------------------------------------------------------------ summary

def load_results(out: str | Path) -> dict[str, list[dict]]:
    """{setting: [one flat dict per seed]}: summarize keys + eval_extras keys + HISTORY_STATS."""
    out = Path(out)
    results: dict[str, list[dict]] = {}
    for path in sorted(out.glob("*/eval.json")) + sorted(out.glob("*/seed*/eval.json")):
        blob = json.loads(path.read_text())
        row = {**blob["summary"], **blob["extra"]}
        hist = path.parent / "metrics.jsonl"
        if hist.is_file():
            recs = [json.loads(line) for line in hist.read_text().splitlines() if line.strip()]
            for name, (key, part) in HISTORY_STATS.items():
                vals = {"first5": recs[:5], "last5": recs[-5:], "all": recs}[part]
                row[name] = sum(r[key] for r in vals) / len(vals)
        results.setdefault(blob["setting"], []).append(row)
    return results


def aggregate(results: dict[str, list[dict]], keys=AGG_KEYS) -> dict[str, dict]:
    """Per setting and key: {"mean", "std" (population, 0 for one seed), "min", "max", "n"}."""
    agg: dict[str, dict] = {}
    for setting, rows in results.items():
        agg[setting] = {}
        for key in keys:
            vals = [float(r[key]) for r in rows if key in r and r[key] is not None and not math.isnan(float(r[key]))]
            if not vals:
                continue
            mean = sum(vals) / len(vals)
            std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
            agg[setting][key] = {"mean": mean, "std": std, "min": min(vals), "max": max(vals), "n": len(vals)}
    return agg


def compare(agg: dict[str, dict], keys=AGG_KEYS) -> dict[str, dict]:
    """Per COMPARISONS entry present in agg and key: diff = mean(a) - mean(b), spread = the larger
    std of the two, and separated = the two min-max ranges over seeds do not overlap."""
    out: dict[str, dict] = {}
    for a, b, question in COMPARISONS:
        if a not in agg or b not in agg:
            continue
        rows = {}
        for key in keys:
            x, y = agg[a].get(key), agg[b].get(key)
            if x is None or y is None:
                continue
            rows[key] = {"diff": x["mean"] - y["mean"], "spread": max(x["std"], y["std"]),
                         "separated": x["min"] > y["max"] or x["max"] < y["min"]}
        out[f"{a} - {b}"] = {"question": question, **rows}
    return out


def markdown_table(agg: dict[str, dict], keys=TABLE_KEYS) -> str:
    """One row per setting: mean ± std in percent (min–max in brackets when n > 1)."""
    order = [UNTRAINED] + [s for s in SETTINGS if s in agg] + [s for s in agg if s not in SETTINGS and s != UNTRAINED]
    rows = {}
    for setting in [s for s in order if s in agg]:
        cells = {"seeds": str(max((a["n"] for a in agg[setting].values()), default=0))}
        for key in keys:
            a = agg[setting].get(key)
            cells[key] = ("" if a is None else f"{100 * a['mean']:.1f} ± {100 * a['std']:.1f}" if a["n"] > 1
                          else f"{100 * a['mean']:.1f}")
        rows[setting] = cells
    return markdown(pd.DataFrame.from_dict(rows, orient="index", columns=["seeds", *keys]), corner="setting") + "\n"


COMPARE_KEYS = ("acc_t1", "acc_t2", "i2c", "c2i", "unit_i2c", "unit_c2i", "train_acc1_last5", "train_equal_groups")


def compare_table(comparisons: dict[str, dict], keys=COMPARE_KEYS) -> str:
    """One row per comparison: the difference of means in points, the larger std in brackets,
    and "*" where the seeds' min-max ranges do not overlap."""
    cells = {name: {key: "" if (r := rows.get(key)) is None
                    else f"{100 * r['diff']:+.1f} ({100 * r['spread']:.1f}){'*' if r['separated'] else ''}" for key in keys}
             for name, rows in comparisons.items()}
    return markdown(pd.DataFrame.from_dict(cells, orient="index", columns=list(keys)), corner="comparison") + "\n"


def write_summary(out: str | Path) -> dict:
    """summary.json ({"settings": aggregate, "comparisons": compare}) and summary.md under OUT;
    returns the aggregate."""
    out = Path(out)
    agg = aggregate(load_results(out))
    comparisons = compare(agg)
    _write_json(out / "summary.json", {"settings": agg, "comparisons": comparisons})
    (out / "summary.md").write_text(
        "Greedy 2-turn evaluation on the same toy-test tasks, % (mean ± population std over seeds); "
        "train_* from the training log (sampled, T = 0.9).\n\n" + markdown_table(agg)
        + "\nDifferences of means, points (larger std of the two); * = the seeds' min-max ranges do not overlap.\n\n"
        + compare_table(comparisons))
    return agg


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m cocos_lib.evaluation.ablations", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train and evaluate every (setting, seed); resumable")
    r.add_argument("--out", default="data/results/ablations", help="committed results (no weights)")
    r.add_argument("--work", default="runs/ablations", help="training runs, checkpoints, weights (git-ignored)")
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    r.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    for field, value in asdict(Sizes()).items():
        r.add_argument(f"--{field.replace('_', '-')}", type=int, default=value)
    r.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    s = sub.add_parser("summary", help="rewrite summary.json / summary.md from the results")
    s.add_argument("--out", default="data/results/ablations")
    args = p.parse_args(argv)
    if args.cmd == "summary":
        print(markdown_table(write_summary(args.out)), end="")
        return 0
    sizes = Sizes(**{f: getattr(args, f) for f in asdict(Sizes())})
    agg = run_all(args.out, args.work, sizes, seeds=tuple(args.seeds), settings=tuple(args.settings),
                  threads=args.threads, command=" ".join(["python -m cocos_lib.evaluation.ablations", *map(str, argv or sys.argv[1:])]))
    print(markdown_table(agg), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
