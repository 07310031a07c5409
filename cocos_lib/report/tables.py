"""The paper's result tables (docs/paper.md §6) as data, and a builder that puts the repo's rows next to them.

All paper numbers are percentages for Qwen2.5-1.5B (docs/paper.md §6, "The paper's numbers").
Repo rows come from ``cocos_lib.evaluate.summarize`` (fractions in [0, 1]);
``compare`` converts them to percent so both sources share one unit.

Column keys are ``summarize`` keys:
    acc_t1, acc_t2, i2c, c2i, delta    Acc@t1, Acc@t2, Delta i->c, Delta c->i, Delta Acc
    unit_i2c, unit_c2i                 unit-level Delta (count reading: share of problems
                                       whose passed-test count rose / fell; the paper does
                                       not publish its definition, see metrics.py)
    gain_t2, gain_t3, gain_t4          Acc@tk - Acc@t1
    acc_t3, acc_t4                     Acc@t3, Acc@t4
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

PAPER_MODEL = "Qwen2.5-1.5B"

LABELS = {
    "acc_t1": "Acc@t1", "acc_t2": "Acc@t2", "acc_t3": "Acc@t3", "acc_t4": "Acc@t4",
    "i2c": "Δi→c", "c2i": "Δc→i", "delta": "ΔAcc",
    "unit_i2c": "Δi→c unit", "unit_c2i": "Δc→i unit",
    "gain_t2": "Acc@t2−Acc@t1", "gain_t3": "Acc@t3−Acc@t1", "gain_t4": "Acc@t4−Acc@t1",
}


@dataclass(frozen=True)
class PaperTable:
    """One results table: ``rows[label][key]`` in percent; ``columns`` are summarize() keys."""
    name: str
    title: str
    columns: tuple[str, ...]
    rows: dict[str, dict[str, float]] = field(default_factory=dict)
    note: str = ""


_MAIN = ("acc_t1", "acc_t2", "i2c", "c2i", "delta")


def _row(values, columns=_MAIN) -> dict[str, float]:
    return dict(zip(columns, values))


PROMPTING = PaperTable("prompting", f"Prompting baselines, MBPP ({PAPER_MODEL})", _MAIN, {
    "simple prompting": _row((43.8, 44.6, 1.4, 0.6, 0.8)),
    "Self-Refine": _row((43.8, 38.2, 2.8, 8.4, -5.6)),
})

TABLE3 = PaperTable("table3", f"Table 3: main results, MBPP ({PAPER_MODEL})", _MAIN, {
    "Turn-SFT": _row((44.2, 44.4, 1.4, 1.2, 0.2)),
    "Self-Corrector": _row((43.8, 48.8, 11.2, 6.2, 5.0)),
    "ReVISE": _row((34.6, 41.2, 11.3, 4.9, 6.4)),
    "Turn-RL": _row((46.4, 48.6, 4.0, 1.8, 2.2)),
    "CoCoS": _row((45.0, 54.2, 11.0, 1.8, 9.2)),
}, note="As published. ReVISE's ΔAcc (6.4) equals Δi→c − Δc→i but not Acc@t2 − Acc@t1 (6.6).")

_T5 = ("acc_t1", "acc_t2", "unit_i2c", "unit_c2i")
TABLE5 = PaperTable("table5", f"Table 5: binary vs progressive reward ({PAPER_MODEL})", _T5, {
    "MBPP binary": _row((45.0, 51.2, 10.5, 3.4), _T5),
    "MBPP progressive": _row((45.0, 54.2, 11.9, 1.9), _T5),
    "HumanEval binary": _row((24.4, 27.4, 9.6, 5.0), _T5),
    "HumanEval progressive": _row((29.3, 32.3, 4.7, 3.1), _T5),
    "ODEX binary": _row((23.0, 25.7, 9.8, 3.9), _T5),
    "ODEX progressive": _row((23.0, 28.9, 34.2, 0.0), _T5),
})

_GAINS = ("gain_t2", "gain_t3", "gain_t4")
TURNS = PaperTable("turns", f"Beyond two turns, MBPP: Acc@tk - Acc@t1 ({PAPER_MODEL})", _GAINS, {
    "CoCoS": _row((9.2, 10.0, 10.4), _GAINS),
    "Self-Corrector": _row((4.8, 4.8, 5.4), _GAINS),
    "Turn-RL": _row((2.2, 2.2, 2.2), _GAINS),
    "Turn-SFT": _row((0.2, 0.2, 0.2), _GAINS),
}, note="As published. Self-Corrector's k=2 gain (4.8) differs from its Table 3 ΔAcc (5.0).")

# CoCoS accuracy per turn on MBPP (Acc@t1 from Table 3, t2..t4 from "beyond two turns").
COCOS_MBPP_ACC_BY_TURN = (45.0, 54.2, 55.0, 55.4)

TABLES: dict[str, PaperTable] = {t.name: t for t in (PROMPTING, TABLE3, TABLE5, TURNS)}


def get_table(name: str) -> PaperTable:
    if name not in TABLES:
        raise KeyError(f"unknown paper table {name!r}; choose one of {sorted(TABLES)}")
    return TABLES[name]


def paper_frame(name: str) -> pd.DataFrame:
    """The paper's table ``name`` alone: rows = methods, columns = metric labels, percent."""
    table = get_table(name)
    data = {label: [vals.get(k, math.nan) for k in table.columns] for label, vals in table.rows.items()}
    return pd.DataFrame.from_dict(data, orient="index", columns=[LABELS[k] for k in table.columns])


def compare(name: str, repo: Mapping[str, Mapping[str, float]], rows: list[str] | None = None,
            decimals: int = 1) -> pd.DataFrame:
    """Paper rows next to repo rows for the same metrics, all in percent.

    ``repo`` maps a row label (e.g. "repo: tiny CoCoS") to a ``summarize()`` dict (fractions);
    ``rows`` restricts the paper rows shown. The result has a ``source`` column
    ("paper (<model>)" or "repo") and one column per metric; missing metrics are NaN.
    """
    table = get_table(name)
    paper_rows = table.rows if rows is None else {r: table.rows[r] for r in rows}
    records, index = [], []
    for label, vals in paper_rows.items():
        index.append(label)
        records.append({"source": f"paper ({PAPER_MODEL})",
                        **{LABELS[k]: vals.get(k, math.nan) for k in table.columns}})
    for label, summary in repo.items():
        index.append(label)
        records.append({"source": "repo", **{LABELS[k]: _percent(summary.get(k)) for k in table.columns}})
    return pd.DataFrame(records, index=index).round(decimals)


def _percent(x) -> float:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return math.nan
    return 100.0 * float(x)


def format_percent(df: pd.DataFrame, decimals: int = 1) -> pd.DataFrame:
    """Numeric percent columns as strings like '54.2' ('–' for missing), for printing."""
    def fmt(v):
        return "–" if pd.isna(v) else f"{v:.{decimals}f}"
    return df.apply(lambda col: col.map(fmt) if pd.api.types.is_numeric_dtype(col) else col)


def markdown(df: pd.DataFrame, decimals: Mapping[str, int] | None = None, corner: str = "") -> str:
    """The one GitHub-markdown table writer (no extra dependency): the index as the first column (headed
    `corner`), floats with 1 decimal or decimals[column], NaN as an empty cell, anything else as str()."""
    header = [corner, *map(str, df.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    places = [(decimals or {}).get(c, 1) for c in df.columns]
    for idx, row in df.iterrows():
        cells = ["" if isinstance(v, float) and math.isnan(v) else f"{v:.{n}f}" if isinstance(v, float) else str(v)
                 for v, n in zip(row.tolist(), places)]
        lines.append("| " + " | ".join([str(idx), *cells]) + " |")
    return "\n".join(lines)


def to_markdown(df: pd.DataFrame, decimals: int = 1) -> str:
    """A percent table (`compare`) as markdown: `format_percent` then `markdown`."""
    return markdown(format_percent(df, decimals))
