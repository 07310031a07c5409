"""Metrics from evaluation rows: the DataFrame `cocos_lib.evaluate` returns (one row per task,
sample, turn) in, plain numbers out. ``summarize`` gives every metric of the paper's tables as a
flat dict of fractions; the others feed the plots. The definitions live in ``cocos_lib.metrics``
(pure, on plain lists); this module only reshapes rows into those lists. All of these stay
importable from ``cocos_lib.evaluate`` (its contract).
"""
from __future__ import annotations

import pandas as pd

from cocos_lib import metrics as M
from cocos_lib.metrics import transition_metrics


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
        out.update(transition_metrics(correct[0], correct[1]))
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


PAIRED = ("acc_t1", "acc_t2", "i2c", "c2i", "no_edit_rate")  # the before/after table's rows


def per_task_indicators(df: pd.DataFrame, threshold: float = M.DEFAULT_NO_EDIT_THRESHOLD) -> dict[str, dict[str, float]]:
    """Per task (sample 0, turns 1-2): the 0/1 whose mean over tasks is each PAIRED metric of `summarize`."""
    wide = df[df["sample"] == 0].pivot(index="task_id", columns="turn", values=["correct", "edit_distance"])
    c1, c2, d = wide["correct"][1].astype(bool), wide["correct"][2].astype(bool), wide["edit_distance"][2]
    cols = {"acc_t1": c1, "acc_t2": c2, "i2c": ~c1 & c2, "c2i": c1 & ~c2, "no_edit_rate": d <= threshold}
    return {name: {t: float(v) for t, v in col.items()} for name, col in cols.items()}


def paired_differences(before: pd.DataFrame, after: pd.DataFrame, n_boot: int = 10_000, seed: int = 0) -> dict:
    """after - before for each PAIRED metric on the tasks both evaluated, with a paired bootstrap interval
    (metrics.paired_bootstrap: tasks resampled): {metric: {before, after, diff, lo, hi, n, ...}}."""
    a, b = per_task_indicators(before), per_task_indicators(after)
    out = {}
    for name in PAIRED:
        tasks = sorted(set(a[name]) & set(b[name]))
        x, y = [a[name][t] for t in tasks], [b[name][t] for t in tasks]
        out[name] = {"before": sum(x) / len(x), "after": sum(y) / len(y),
                     **M.paired_bootstrap(x, y, n_boot=n_boot, seed=seed)}
    return out
