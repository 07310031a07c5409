"""Every reference into docs/paper.md names a section that exists: `docs/paper.md §N`, chains such as
`§2, §8` or `§4-§6`, and the quoted title after a number or after `docs/paper.md,` must be (the start of)
that heading. Searched: the notebooks (their cells), README.md, docs/ and the library's sources."""
from __future__ import annotations

import re
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
PAPER = ROOT / "docs" / "paper.md"
HEADING = re.compile(r"^## (\d+)\. (.+)$", re.M)
# "paper.md" then, within a few characters, "§N" or a quoted title
AFTER = re.compile(r"paper\.md\)?[^§\"\n]{0,24}((?:§\d+(?:\s*\"[^\"]+\"|\s*\(\"[^\"]+\"\)|,\s*\"[^\"]+\")?"
                   r"(?:\s*(?:,|-|–|and)\s*)?)+)")
TITLE_ONLY = re.compile(r"paper\.md,\s*\"([^\"]+)\"")
ONE = re.compile(r"§(\d+)(?:\s*\"([^\"]+)\"|\s*\(\"([^\"]+)\"\)|,\s*\"([^\"]+)\")?")


def headings() -> dict[int, str]:
    return {int(n): title for n, title in HEADING.findall(PAPER.read_text(encoding="utf-8"))}


def texts() -> dict[str, str]:
    out = {"README.md": (ROOT / "README.md").read_text(encoding="utf-8")}
    for path in sorted((ROOT / "docs").glob("*.md")):
        out[str(path.relative_to(ROOT))] = path.read_text(encoding="utf-8")
    for path in sorted((ROOT / "cocos_lib").rglob("*.py")) + sorted((ROOT / "tools").glob("*.py")):
        out[str(path.relative_to(ROOT))] = path.read_text(encoding="utf-8")
    for path in sorted((ROOT / "notebooks").rglob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        out[str(path.relative_to(ROOT))] = "\n".join(c.source for c in nb.cells)
    return out


def references(text: str) -> list[tuple[int | None, str | None]]:
    """(section number or None, quoted title or None) for every reference in text."""
    refs = []
    for m in AFTER.finditer(text):
        for one in ONE.finditer(m.group(1)):
            refs.append((int(one.group(1)), next((g for g in one.groups()[1:] if g), None)))
    refs += [(None, title) for title in TITLE_ONLY.findall(text)]
    return refs


def test_the_reference_parser_reads_each_form():
    text = ('(docs/paper.md §3 "Rewards" and §4 "Objective") [docs/paper.md](../docs/paper.md) §4, "Obj" '
            'docs/paper.md §4-§6: docs/paper.md §2, §8) docs/paper.md §7 ("Why") (docs/paper.md, "Evaluation")')
    assert references(text) == [(3, "Rewards"), (4, "Objective"), (4, "Obj"), (4, None), (6, None), (2, None),
                                (8, None), (7, "Why"), (None, "Evaluation")]


def test_every_paper_md_section_reference_resolves():
    sections = headings()
    assert sorted(sections) == list(range(1, len(sections) + 1))
    bad, seen = [], 0
    for name, text in texts().items():
        for number, title in references(text):
            seen += 1
            if number is not None and number not in sections:
                bad.append(f"{name}: §{number} does not exist")
            elif number is not None and title and not sections[number].lower().startswith(title.lower()):
                bad.append(f"{name}: §{number} is {sections[number]!r}, not {title!r}")
            elif number is None and not any(h.lower().startswith(title.lower()) for h in sections.values()):
                bad.append(f"{name}: no section is titled {title!r}")
    assert not bad, "\n".join(bad)
    assert seen >= 25  # the references this test was written against


LINK = re.compile(r"\]\((?!https?:|#|mailto:)([^)\s#]+)")


def test_every_relative_link_resolves():
    """A relative markdown link in README.md, docs/*.md or a notebook's markdown cells names a file or folder
    that exists (modules move: a link into the library must move with them)."""
    sources = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    bad, seen = [], 0
    for path in sources + sorted((ROOT / "notebooks").rglob("*.ipynb")):
        if path.suffix == ".ipynb":
            text = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
        else:
            text = path.read_text(encoding="utf-8")
        for target in LINK.findall(text):
            seen += 1
            if not (path.parent / target).exists():
                bad.append(f"{path.relative_to(ROOT)}: {target}")
    assert not bad, "links to nothing:\n" + "\n".join(bad)
    assert seen >= 50
