"""README's tables are the ones cocos_lib.report.results builds from the committed results."""
import importlib.util
from pathlib import Path

import pytest

from cocos_lib.report import results as R
from cocos_lib.report.tables import markdown

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "tools" / "readme_tables.py")
T = importlib.util.module_from_spec(spec)
spec.loader.exec_module(T)


def test_readme_tables_are_generated_from_the_committed_results():
    text, tables = (ROOT / "README.md").read_text(encoding="utf-8"), R.readme_tables()
    names = [m["name"] for m in T.BLOCK.finditer(text)]
    assert {"ablations", "ablation-comparisons"} <= set(names), names
    assert T.stale(text, tables) == []


def test_render_replaces_only_marked_blocks_and_rejects_unknown_names():
    text = "a\n<!-- table:x -->\nold\n<!-- /table:x -->\nb"
    assert T.render(text, {"x": "new"}) == "a\n<!-- table:x -->\nnew\n<!-- /table:x -->\nb"
    assert T.stale(text, {"x": "new"}) == ["x"] and T.stale(text, {"x": "old"}) == []
    empty = "<!-- table:x -->\n<!-- /table:x -->"
    assert T.stale(empty, {"x": "t"}) == ["x"] and T.render(empty, {"x": "t"}) == "<!-- table:x -->\nt\n<!-- /table:x -->"
    with pytest.raises(KeyError, match="table 'x' has no generator"):
        T.render(text, {})


def test_ablation_table_numbers_come_from_the_summary():
    summary = R.read_json("ablations/summary.json")
    table = R.ablation_table(summary)
    cocos = summary["settings"]["cocos"]["acc_t2"]
    assert table.loc["cocos", "Acc@t2"] == f"{100 * cocos['mean']:.1f} ± {100 * cocos['std']:.1f}"
    assert list(table.index)[0] == "untrained" and table.loc["untrained", "seeds"] == 1
    comp = R.comparison_table(summary)
    diff = summary["comparisons"]["cocos - untrained"]["acc_t2"]
    assert comp.loc["cocos - untrained", "Acc@t2"].startswith(f"{100 * diff['diff']:+.1f}")


def test_study_table_puts_the_paper_rows_beside_the_models():
    meta = {"model": "m", "turns": 2, "summary": {"cocos": {"acc_t1": 0.5, "acc_t2": 0.55, "i2c": 0.1, "c2i": 0.05,
                                                            "delta": 0.05, "no_edit_rate_wrong": 0.9}}}
    df = R.study_table(meta)
    assert df.loc["paper, Qwen2.5-1.5B: simple prompting", "Acc@t1"] == 43.8
    assert df.loc["paper, Qwen2.5-1.5B: simple prompting", "no edit, wrong t2"] == 93.0
    assert df.loc["m: simple prompting", "Acc@t2"] == 55.0 and df.loc["m: simple prompting", "Δc→i"] == 5.0
    assert markdown(df).splitlines()[0].startswith("|  | Acc@t1 | Acc@t2")


def test_results_dir_finds_an_uploaded_copy_below_work_dir(tmp_path, monkeypatch):
    copy = tmp_path / "cocos-main" / "data" / "results" / "ablations"
    copy.mkdir(parents=True)
    (copy / "summary.json").write_text("{}")
    assert R.results_dir(tmp_path) == tmp_path / "cocos-main" / "data" / "results"
    assert R.results_dir(None) == R.RESULTS                               # this checkout's own
    monkeypatch.setattr(R, "RESULTS", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="run the notebook in a copy of the repository"):
        R.results_dir(tmp_path / "empty")


def test_precision_bench_table_by_hand():
    """fp32 and bf16 side by side, the same-run ratio and same-code share, each section's peak memory."""
    from cocos_lib.report.results import precision_bench_table
    recs = [dict(section="env"),
            dict(section="decode", dtype="fp32", batch=8, new_tokens_per_s=20.04, peak_rss_gib=3.86),
            dict(section="decode", dtype="bf16", batch=8, new_tokens_per_s=61.98, peak_rss_gib=1.79),
            dict(section="update", dtype="fp32", seconds_per_rollout=11.234, peak_rss_gib=15.9),
            dict(section="update", dtype="bf16", seconds_per_rollout=5.331, peak_rss_gib=11.3),
            dict(section="ratio", what="decode", batch=8, bf16_over_fp32=3.093, same_code_share=0.6875),
            dict(section="ratio", what="update", bf16_over_fp32=2.107)]
    t = precision_bench_table(recs)
    row = t.loc["packed decode, batch 8 (new tokens/s)"]
    assert (row["fp32"], row["bf16"], row["bf16 / fp32"], row["same code"]) == (20.0, 62.0, 3.09, "69%")
    row = t.loc["LoRA RLOO update (s per rollout)"]
    assert (row["fp32"], row["bf16"], row["bf16 / fp32"], row["peak GiB fp32"]) == (11.23, 5.33, 2.11, 15.9)


def test_precision_bench_accuracy_row_by_hand():
    """The accuracy line: fp32 from the committed study, bf16 measured, and how many verdicts differ."""
    from cocos_lib.report.results import precision_bench_table
    recs = [dict(section="decode", dtype="bf16", batch=8, new_tokens_per_s=61.98, peak_rss_gib=1.79),
            dict(section="accuracy", dtype="bf16", tasks=164, acc_t1_bf16=93 / 164, acc_t1_fp32_committed=94 / 164,
                 changed=["HumanEval/1", "HumanEval/7", "HumanEval/9"], peak_rss_gib=2.0)]
    row = precision_bench_table(recs).loc["HumanEval Acc@t1, greedy (% of 164)"]
    assert (row["fp32"], row["bf16"], row["same code"]) == (57.3, 56.7, "3 verdicts differ")


def test_paper_cocos_minus_base_is_table3_minus_simple_prompting():
    from cocos_lib.report.results import paper_cocos_minus_base
    # docs/paper.md: CoCoS 45.0 / 54.2 / 11.0 / 1.8 against simple prompting 43.8 / 44.6 / 1.4 / 0.6
    assert paper_cocos_minus_base() == {"acc_t1": 1.2, "acc_t2": 9.6, "i2c": 9.6, "c2i": 1.2}


def test_cpu_run_totals_count_by_hand():
    from cocos_lib.report.results import cpu_run_totals
    run = [dict(equal_groups=0.75, i2c_t2=1 / 16, c2i_t2=0.0, edit_t2=0.5, reward_t1=0.5, reward_t2=0.25, grad_norm=0.5,
                kl=0.0, sec_update=10.0),
           dict(equal_groups=1.0, i2c_t2=0.0, c2i_t2=2 / 16, edit_t2=0.25, reward_t1=0.5, reward_t2=0.75, grad_norm=3.0,
                kl=0.2, sec_update=20.0)]
    t = cpu_run_totals(run, prompts_per_update=4, k=4)            # 4 groups, 16 corrections per update
    assert (t["groups"], t["unequal_groups"], t["corrections"], t["repairs"], t["breakages"]) == (8, 1, 32, 1, 2)
    assert (t["edit_min"], t["edit_max"], t["r2_below_r1"], t["clip_binds"], t["kl_last"], t["seconds"]) == \
        (0.25, 0.5, 1, 1, 0.2, 30.0)
