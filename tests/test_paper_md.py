"""docs/paper.md §10 "Deviations from the release": its table must match config.PROFILES, and must list every
field on which `paper` and `released` differ (so the page cannot drift from the profiles)."""
from pathlib import Path

from cocos_lib.config import TrainConfig, profile_settings

PAGE = Path(__file__).resolve().parents[1] / "docs" / "paper.md"


def cell(value) -> str:
    """How the table writes a profile value."""
    if value is None:
        return "`none`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def deviation_rows() -> dict[str, list[str]]:
    text = PAGE.read_text()
    section = text[text.index("## 10. Deviations from the release"):]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            rows[cells[0].strip("`")] = cells
    return rows


def test_table_cells_match_the_profiles():
    rows = deviation_rows()
    assert len(rows) >= 10
    paper, released = profile_settings("paper"), profile_settings("released")
    fields = set(TrainConfig.__dataclass_fields__)
    for name, cells in rows.items():
        assert name in fields, f"docs/paper.md §10: {name!r} is not a TrainConfig field"
        assert len(cells) == 5, f"docs/paper.md §10 row {name!r}: expected 5 cells"
        assert cells[2] == cell(paper[name]), f"docs/paper.md §10 row {name!r}: paper is {cell(paper[name])}"
        assert cells[3] == cell(released[name]), f"docs/paper.md §10 row {name!r}: released is {cell(released[name])}"


def test_table_lists_every_field_where_paper_and_released_differ():
    paper, released = profile_settings("paper"), profile_settings("released")
    differ = {k for k in paper if paper[k] != released[k]}
    assert differ and differ <= set(deviation_rows())


def test_the_prompt_claim_is_gone():
    """#21 item 1: the release trains and evaluates with one prompt (a blank line before [BEGIN])."""
    text = PAGE.read_text()
    assert "the training prompt of section 2\n  has none" not in text
    assert "\\n\\n{tests}\\n\\n[BEGIN]\\n" in text[text.index("## 2."):text.index("## 3.")]
