"""The paper's tables as data, and the paper-vs-repo builder."""
import math

import pytest

from cocos_lib.report import tables


def test_paper_rows_are_internally_consistent():
    # Delta Acc = Delta i->c - Delta c->i in every published row, and = Acc@t2 - Acc@t1 except
    # for ReVISE, whose published row is itself inconsistent (41.2 - 34.6 = 6.6, not 6.4).
    for table in (tables.PROMPTING, tables.TABLE3):
        for label, row in table.rows.items():
            assert row["delta"] == pytest.approx(row["i2c"] - row["c2i"], abs=0.01), label
            if label != "ReVISE":
                assert row["delta"] == pytest.approx(row["acc_t2"] - row["acc_t1"], abs=0.01), label
    assert "ReVISE" in tables.TABLE3.note
    # beyond two turns: CoCoS gains equal Acc@tk - 45.0
    acc = tables.COCOS_MBPP_ACC_BY_TURN
    gains = [tables.TURNS.rows["CoCoS"][k] for k in ("gain_t2", "gain_t3", "gain_t4")]
    assert gains == pytest.approx([a - acc[0] for a in acc[1:]])
    assert tables.TABLE3.rows["CoCoS"]["acc_t2"] == acc[1]


def test_paper_frame_values():
    df = tables.paper_frame("table5")
    assert df.loc["HumanEval progressive", "Acc@t2"] == 32.3
    assert df.loc["ODEX binary", "Δc→i unit"] == 3.9
    assert list(df.columns) == ["Acc@t1", "Acc@t2", "Δi→c unit", "Δc→i unit"]


def test_compare_puts_repo_rows_in_percent():
    repo = {"repo: base": {"acc_t1": 0.25, "acc_t2": 0.3, "i2c": 0.1, "c2i": 0.05, "delta": 0.05}}
    df = tables.compare("prompting", repo)
    assert list(df.index) == ["simple prompting", "Self-Refine", "repo: base"]
    assert df.loc["repo: base", "Acc@t1"] == 25.0 and df.loc["repo: base", "ΔAcc"] == 5.0
    assert df.loc["Self-Refine", "Δc→i"] == 8.4
    assert df.loc["repo: base", "source"] == "repo"
    assert df.loc["simple prompting", "source"].startswith("paper")


def test_compare_missing_metric_and_row_selection():
    df = tables.compare("turns", {"repo": {"gain_t2": 0.125}}, rows=["CoCoS"])
    assert list(df.index) == ["CoCoS", "repo"]
    assert df.loc["repo", "Acc@t2−Acc@t1"] == 12.5
    assert math.isnan(df.loc["repo", "Acc@t4−Acc@t1"])
    text = tables.format_percent(df)
    assert text.loc["repo", "Acc@t4−Acc@t1"] == "–" and text.loc["CoCoS", "Acc@t3−Acc@t1"] == "10.0"


def test_markdown_and_unknown_table():
    md = tables.to_markdown(tables.compare("table3", {}, rows=["CoCoS"]))
    assert md.splitlines()[2] == "| CoCoS | paper (Qwen2.5-1.5B) | 45.0 | 54.2 | 11.0 | 1.8 | 9.2 |"
    with pytest.raises(KeyError, match="unknown paper table 'nope'"):
        tables.compare("nope", {})
