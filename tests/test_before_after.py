"""tools/before_after.py: paired before/after numbers from two evaluation files, computed by hand here."""
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("before_after", ROOT / "tools" / "before_after.py")
BA = importlib.util.module_from_spec(spec)
spec.loader.exec_module(BA)


def rows(verdicts: dict[str, tuple[bool, bool]], edits: dict[str, float]) -> list[dict]:
    out = []
    for task, (c1, c2) in verdicts.items():
        for turn, c in ((1, c1), (2, c2)):
            out.append(dict(task_id=task, sample=0, turn=turn, method="cocos", correct=c, new_tokens=10,
                            outcomes=["passed" if c else "failed"], edit_distance=0.0 if turn == 1 else edits[task]))
    return out


def write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_paired_numbers_match_a_hand_count(tmp_path):
    # before: t1 right on a, b; t2 identical (no edit anywhere). after: t1 right on a only; t2 repairs c, breaks nothing.
    before = write(tmp_path / "b.jsonl", rows({"a": (1, 1), "b": (1, 1), "c": (0, 0), "d": (0, 0)},
                                              dict.fromkeys("abcd", 0.0)))
    after = write(tmp_path / "a.jsonl", rows({"a": (1, 1), "b": (0, 0), "c": (0, 1), "d": (0, 0), "e": (1, 1)},
                                             {"a": 0.0, "b": 0.0, "c": 0.4, "d": 0.3, "e": 0.0}))
    res = BA.compare(before, after, n_boot=200)
    assert res["n_tasks"] == 4                                   # e is only in `after`: left out of every number
    p = res["paired"]
    assert (p["acc_t1"]["before"], p["acc_t1"]["after"], p["acc_t1"]["diff"]) == (0.5, 0.25, -0.25)
    assert (p["acc_t2"]["before"], p["acc_t2"]["after"], p["acc_t2"]["diff"]) == (0.5, 0.5, 0.0)
    assert (p["i2c"]["before"], p["i2c"]["after"]) == (0.0, 0.25)
    assert (p["c2i"]["before"], p["c2i"]["after"]) == (0.0, 0.0)
    assert (p["no_edit_rate"]["before"], p["no_edit_rate"]["after"]) == (1.0, 0.5)
    assert p["i2c"]["lo"] <= 0.25 <= p["i2c"]["hi"] and p["i2c"]["lo"] >= 0.0
    assert res["inputs"]["before"] == "b.jsonl" and len(res["inputs"]["sha256_after"]) == 64


def test_a_file_without_turn_two_is_a_one_line_error(tmp_path):
    one_turn = write(tmp_path / "t1.jsonl", [r for r in rows({"a": (1, 1)}, {"a": 0.0}) if r["turn"] == 1])
    with pytest.raises(SystemExit, match="t1.jsonl: needs turns 1 and 2"):
        BA.compare(one_turn, one_turn)
