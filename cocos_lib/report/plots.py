"""The figures the notebooks show, in one consistent style.

Design decision: every function takes plain data and a ``figures_dir``, draws on a
``matplotlib.figure.Figure`` created directly (object API, no pyplot), saves a PNG and
returns its ``Path``. No pyplot means no backend and no global figure state: it works
headless (Agg) in CI and never leaks open figures. In a notebook call ``show(path)``
(or ``IPython.display.Image(path)``) to display the saved file inline, so what the
reader sees is exactly the committed file.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from cocos_lib.report import tables

# transition colours: kept, broken, fixed, still wrong
COLORS = {"c2c": "#4c9f70", "c2i": "#d1495b", "i2c": "#2e86ab", "i2i": "#b8b8b8"}
TRANSITION_LABELS = {"c2c": "correct → correct", "c2i": "correct → incorrect",
                     "i2c": "incorrect → correct", "i2i": "incorrect → incorrect"}
# answers split by outcome: the colours of the transitions they end in (right: kept green, wrong: broken red)
ANSWER_COLORS = {"answer right": COLORS["c2c"], "answer wrong": COLORS["c2i"], "right": COLORS["c2c"],
                 "wrong": COLORS["c2i"]}
PALETTE = ("#2e86ab", "#d1495b", "#4c9f70", "#edae49", "#6c5b7b", "#00798c")

_RC = {
    "figure.dpi": 110, "figure.constrained_layout.use": True, "savefig.dpi": 130, "savefig.bbox": "tight",
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 8,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
    "grid.alpha": 0.3, "grid.linestyle": "-",
}


@contextlib.contextmanager
def style():
    """The repo's figure style (rcParams), restored on exit."""
    with matplotlib.rc_context(_RC):
        yield


def _save(fig: Figure, figures_dir, filename: str) -> Path:
    out = Path(figures_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / filename
    fig.savefig(path)
    return path


def show(path) -> None:
    """Display a saved figure inline when running under IPython; otherwise do nothing."""
    try:
        from IPython import get_ipython  # lazy: optional dependency (no IPython outside a notebook)
        from IPython.display import Image, display  # lazy: optional dependency (as above)
    except ImportError:
        return
    if get_ipython() is not None:
        display(Image(filename=str(path)))


def plot_transitions(matrices: Mapping[str, Mapping[str, float]], figures_dir,
                     filename: str = "transitions.png", title: str = "Turn-pair transitions") -> Path:
    """Stacked bars, one per turn pair (or run): shares c->c, c->i, i->c, i->i in percent.

    ``matrices``: label -> ``metrics.transition_matrix`` dict, e.g. {"t1→t2": {...}, "t2→t3": {...}}.
    """
    with style():
        fig = Figure(figsize=(1.4 + 1.1 * len(matrices), 3.6))
        ax = fig.add_subplot()
        labels = list(matrices)
        bottom = [0.0] * len(labels)
        for key in ("c2c", "i2c", "c2i", "i2i"):
            vals = [100 * matrices[lab].get(key, 0.0) for lab in labels]
            bars = ax.bar(labels, vals, bottom=bottom, color=COLORS[key], label=TRANSITION_LABELS[key], width=0.6)
            for bar, v, b in zip(bars, vals, bottom):
                if v >= 4:
                    ax.text(bar.get_x() + bar.get_width() / 2, b + v / 2, f"{v:.1f}", ha="center",
                            va="center", fontsize=7, color="white" if key != "i2i" else "black")
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.set_ylim(0, 100)
        ax.set_ylabel("share of problems (%)")
        ax.set_title(title)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        return _save(fig, figures_dir, filename)


def plot_accuracy_gains(curves: Mapping[str, Sequence[float]], figures_dir,
                        filename: str = "acc_gains.png", paper: bool = True,
                        title: str = "Acc@tk − Acc@t1") -> Path:
    """Lines of Acc@tk - Acc@t1 (k = 1..T) for repo runs (solid); paper rows dashed.

    ``curves``: label -> gains as fractions, first entry 0 (``metrics.accuracy_gains``).
    ``paper``: also draw the paper's beyond-two-turns rows (docs/paper.md §6) (percent, MBPP, Qwen2.5-1.5B).
    """
    with style():
        fig = Figure(figsize=(5.4, 3.6))
        ax = fig.add_subplot()
        for i, (label, gains) in enumerate(curves.items()):
            ax.plot(range(1, len(gains) + 1), [100 * g for g in gains], marker="o",
                    color=PALETTE[i % len(PALETTE)], label=f"{label} (repo)")
        if paper:
            for i, (label, row) in enumerate(tables.TURNS.rows.items()):
                ys = [0.0] + [row[k] for k in tables.TURNS.columns]
                ax.plot(range(1, len(ys) + 1), ys, linestyle="--", marker=".", alpha=0.6,
                        color=PALETTE[(i + len(curves)) % len(PALETTE)], label=f"{label} (paper)")
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xlabel("turn k")
        ax.set_ylabel("Acc@tk − Acc@t1 (points)")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_title(title)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        return _save(fig, figures_dir, filename)


EDIT_BINS = (0.05, 0.1, 0.2, 0.4, 0.7, 1.0)  # upper edges after "identical" (d = 0) and (0, 0.05]


def edit_bins(distances: Sequence[float], threshold: float = 0.05) -> dict[str, float]:
    """Share (%) of the distances in each bin: "identical" (d = 0), (0, threshold], then the
    EDIT_BINS above the threshold, each (a, b]. NaN (no previous turn) is left out."""
    ds = [d for d in distances if not (isinstance(d, float) and math.isnan(d))]
    edges = [threshold, *[e for e in EDIT_BINS if e > threshold]]
    names = ["identical", f"(0, {threshold:g}]", *[f"({a:g}, {b:g}]" for a, b in zip(edges, edges[1:])]]
    counts = dict.fromkeys(names, 0)
    for d in ds:
        if d == 0:
            counts["identical"] += 1
        else:
            i = next(i for i, e in enumerate(edges) if d <= e or i == len(edges) - 1)
            counts[names[i + 1]] += 1
    return {k: 100 * v / len(ds) if ds else 0.0 for k, v in counts.items()}


def plot_edit_distances(distances: Mapping[str, Sequence[float]] | Sequence[float], figures_dir,
                        filename: str = "edit_distance.png", threshold: float = 0.05,
                        title: str = "Normalised edit distance, turn t → t+1") -> Path:
    """Grouped bars of normalised edit distances (`edit_bins`): identical answers, edits up to the
    no-edit threshold, then wider bins; one bar per group in each bin, as a share of that group (%).

    ``distances``: a sequence, or label -> sequence (e.g. {"answer wrong": [...], "answer right": [...]}).
    Most of the mass of a model that barely revises sits at d = 0: its own bar, not a spike at the axis."""
    groups = distances if isinstance(distances, Mapping) else {"all": distances}
    shares = {label: edit_bins(ds, threshold) for label, ds in groups.items()}
    sizes = {label: sum(1 for d in ds if not (isinstance(d, float) and math.isnan(d))) for label, ds in groups.items()}
    names = list(next(iter(shares.values())))
    width = 0.8 / max(1, len(shares))
    with style():
        fig = Figure(figsize=(6.4, 3.4))
        ax = fig.add_subplot()
        for j, (label, share) in enumerate(shares.items()):
            xs = [i + (j - (len(shares) - 1) / 2) * width for i in range(len(names))]
            color = ANSWER_COLORS.get(label.split(" (")[0], PALETTE[j % len(PALETTE)])
            bars = ax.bar(xs, [share[n] for n in names], width=width * 0.9, color=color,
                          label=f"{label} (n={sizes[label]})")
            for bar, n in zip(bars, names):
                if share[n] >= 1:
                    ax.text(bar.get_x() + bar.get_width() / 2, share[n] + 1, f"{share[n]:.0f}", ha="center",
                            fontsize=7)
        ax.axvline(1.5, color="black", linestyle="--", linewidth=1)
        ax.text(1.6, 100, f"← no edit (d ≤ {threshold:g})", fontsize=7, va="top", ha="left")
        ax.set_xticks(range(len(names)), names, rotation=20)
        ax.set_ylim(0, 105)
        ax.set_xlabel("normalised edit distance d = Levenshtein / max length")
        ax.set_ylabel("share of the group (%)")
        ax.set_title(title)
        ax.legend(frameon=False)
        return _save(fig, figures_dir, filename)


def _rolling(values: Sequence[float], window: int) -> list[float]:
    out, acc, buf = [], 0.0, []
    for v in values:
        buf.append(v)
        acc += v
        if len(buf) > window:
            acc -= buf.pop(0)
        out.append(acc / len(buf))
    return out


def plot_training_curves(records: Sequence[Mapping[str, float]], figures_dir,
                         filename: str = "training_curves.png", window: int = 10,
                         title: str = "Training") -> Path:
    """Three panels from train.py's metrics.jsonl records (one dict per update):
    accumulated reward R, per-turn rewards r_t (reward_t1, reward_t2, ...), and KL.
    Faint lines are raw values, solid lines a rolling mean over ``window`` updates."""
    if not records:
        raise ValueError("plot_training_curves: no records (empty metrics.jsonl?)")
    x = [r.get("update", i) for i, r in enumerate(records)]
    turn_keys = sorted((k for k in records[0] if k.startswith("reward_t")), key=lambda k: int(k[8:]))
    panels = [("accumulated reward R", ["accumulated"]), ("reward per turn r_t", turn_keys),
              ("KL(π_θ ‖ π_ref)", ["kl"])]
    with style():
        fig = Figure(figsize=(11, 3.2))
        axes = fig.subplots(1, 3)
        for ax, (name, keys) in zip(axes, panels):
            for i, key in enumerate(keys):
                ys = [r.get(key, math.nan) for r in records]
                c = PALETTE[i % len(PALETTE)]
                ax.plot(x, ys, color=c, alpha=0.25, linewidth=0.8)
                ax.plot(x, _rolling(ys, window), color=c, label=key)
            ax.set_title(name)
            ax.set_xlabel("update")
            if len(keys) > 1:
                ax.legend(frameon=False)
        fig.suptitle(title)
        return _save(fig, figures_dir, filename)


def reward_grid(gamma: float, n_tests: int = 1) -> list[list[float]]:
    """grid[i][j] = R for r_1 = i/K, r_2 = j/K with R = gamma * r_1 + (r_2 - r_1) (T = 2)."""
    levels = [j / n_tests for j in range(n_tests + 1)]
    return [[gamma * r1 + (r2 - r1) for r2 in levels] for r1 in levels]


def plot_reward_table(gamma: float, figures_dir, n_tests: int = 1, filename: str | None = None) -> Path:
    """Heatmap of the two-turn accumulated reward R = gamma * r_1 + (r_2 - r_1).

    n_tests = 1 gives the binary table (docs/paper.md §3: i->c 1, c->c 0.5, i->i 0, c->i -0.5 at
    gamma = 0.5); n_tests = K shows the progressive reward's grid r_t in {0, 1/K, .., 1}.
    """
    levels = [j / n_tests for j in range(n_tests + 1)]
    grid = reward_grid(gamma, n_tests)
    names = [f"{j}/{n_tests}" if 0 < j < n_tests else str(j // n_tests) for j in range(n_tests + 1)]
    with style():
        fig = Figure(figsize=(1.8 + 0.7 * len(levels), 1.4 + 0.6 * len(levels)))
        ax = fig.add_subplot()
        ax.grid(False)
        im = ax.imshow(grid, cmap="RdYlGn", vmin=-1, vmax=1, origin="lower")
        for i, row in enumerate(grid):
            for j, v in enumerate(row):
                ax.text(j, i, f"{v:+.2f}", ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(levels)), names)
        ax.set_yticks(range(len(levels)), names)
        ax.set_xlabel("r_2 (turn 2)")
        ax.set_ylabel("r_1 (turn 1)")
        ax.set_title(f"R = γ·r_1 + (r_2 − r_1), γ = {gamma:g}")
        fig.colorbar(im, ax=ax, shrink=0.8)
        return _save(fig, figures_dir, filename or f"reward_table_gamma{gamma:g}.png")


def plot_seed_bars(results: Mapping[str, Sequence[Mapping[str, float]]], figures_dir, keys=("acc_t1", "acc_t2"),
                   filename: str = "seed_bars.png", title: str = "") -> Path:
    """Grouped bars per setting: the mean over seeds of each key (fractions -> %), one dot per seed.

    ``results``: setting -> one summary dict per seed (``ablations.load_results``)."""
    names = list(results)
    width = 0.8 / len(keys)
    with style():
        fig = Figure(figsize=(1.6 + 1.1 * len(names), 3.6))
        ax = fig.add_subplot()
        for j, key in enumerate(keys):
            xs = [i + (j - (len(keys) - 1) / 2) * width for i in range(len(names))]
            seeds = [[100 * r[key] for r in results[n]] for n in names]
            ax.bar(xs, [sum(s) / len(s) for s in seeds], width=width * 0.9, color=PALETTE[j % len(PALETTE)],
                   alpha=0.75, label=tables.LABELS.get(key, key))
            for x, s in zip(xs, seeds):
                ax.scatter([x] * len(s), s, s=10, color="black", zorder=3)
        ax.set_xticks(range(len(names)), names)
        ax.set_ylim(0, 100)
        ax.set_ylabel("greedy accuracy (% of problems)")
        ax.set_title(title or "mean over seeds (bars), each seed (dots)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        return _save(fig, figures_dir, filename)


def plot_seed_curves(histories: Mapping[str, Sequence[Sequence[Mapping[str, float]]]], key: str, figures_dir,
                     filename: str = "seed_curves.png", window: int = 5, ylabel: str = "",
                     title: str = "") -> Path:
    """Per setting: the mean over seeds of ``key``'s rolling mean (window updates) against the update,
    with the seeds' min-max as a band. ``histories``: setting -> one train() record list per seed."""
    with style():
        fig = Figure(figsize=(6.4, 3.6))
        ax = fig.add_subplot()
        for i, (name, runs) in enumerate(histories.items()):
            curves = [_rolling([r[key] for r in run], window) for run in runs]
            n = min(len(c) for c in curves)
            x = [runs[0][u]["update"] for u in range(n)]
            cols = [[c[u] for c in curves] for u in range(n)]
            color = PALETTE[i % len(PALETTE)]
            ax.plot(x, [sum(c) / len(c) for c in cols], color=color, label=f"{name} ({len(runs)} seeds)")
            ax.fill_between(x, [min(c) for c in cols], [max(c) for c in cols], color=color, alpha=0.15, linewidth=0)
        ax.set_xlabel("update")
        ax.set_ylabel(ylabel or key)
        ax.set_title(title or f"{key}, rolling mean over {window} updates (band: min-max over seeds)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        return _save(fig, figures_dir, filename)


def plot_runs(histories: dict[str, Sequence[dict]], key: str, figures_dir, filename: str, title: str = "") -> Path:
    """One line per run: metric `key` (e.g. "reward_t2") of train() records against the update; saves a PNG."""
    with style():
        fig = Figure(figsize=(6.4, 3.6))
        ax = fig.add_subplot()
        for i, (name, records) in enumerate(histories.items()):
            ax.plot([r["update"] for r in records], [r.get(key, float("nan")) for r in records], label=name,
                    color=PALETTE[i % len(PALETTE)], linestyle="-" if i < len(PALETTE) else "--")
        ax.set(xlabel="update", ylabel=key, title=title or key)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        return _save(fig, figures_dir, filename)
