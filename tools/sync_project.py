"""Write the repository address (REPO in cocos_lib/notebook/project.py) into the README's Colab badges and
into every notebook's install cell (and the note above it), or check that they all agree.

    python tools/sync_project.py                    # rewrite badges and install cells from REPO
    python tools/sync_project.py --repo owner/name  # set REPO in cocos_lib/notebook/project.py first
    python tools/sync_project.py --check            # list what disagrees, exit 1 (tests run this)

Notebooks are edited as JSON, keeping everything else byte for byte; a rewritten cell loses its
outputs (and, if it had any, its execution count). The install cell is the one code cell that runs
cocos_lib/notebook/install.py (or, as written before that file existed, the one that holds `%pip`), so
this also rewrites an older branch's notebooks.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from cocos_lib.notebook import project  # noqa: E402  (the repo's own copy, whatever is installed)

_REPO_LINE = re.compile(r'^REPO = "([^"]*)"', re.M)
_COLAB_LINK = re.compile(r"https://colab\.research\.google\.com/github/[^)\s]*?/notebooks/([0-9][0-9]_[\w.-]+\.ipynb)")


def current_repo(root: Path) -> str:
    """REPO as written in root/cocos_lib/notebook/project.py (read as text: root may be a copy)."""
    m = _REPO_LINE.search((root / "cocos_lib" / "notebook" / "project.py").read_text(encoding="utf-8"))
    if m is None:
        raise SystemExit(f"{root / 'cocos_lib/notebook/project.py'}: no line 'REPO = \"owner/name\"'")
    return m.group(1)


def set_repo(root: Path, repo: str) -> None:
    path = root / "cocos_lib" / "notebook" / "project.py"
    text = path.read_text(encoding="utf-8")
    path.write_text(_REPO_LINE.sub(f'REPO = "{project.check_repo(repo)}"', text, count=1), encoding="utf-8")


def notebooks(root: Path) -> list[Path]:
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def is_install_cell(cell: dict) -> bool:
    """The code cell that installs cocos_lib: today's runs project.INSTALL_SCRIPT, an older one `%pip`."""
    return cell["cell_type"] == "code" and any(mark in _source(cell) for mark in (project.INSTALL_SCRIPT, "%pip"))


def _set_source(cell: dict, text: str) -> None:
    """New source; a code cell's old outputs (and then its execution count) go, a cell without outputs keeps its
    count, so that the edit is the source alone."""
    cell["source"] = text.splitlines(keepends=True)
    if cell["cell_type"] == "code" and cell.get("outputs"):
        cell["outputs"] = []
        cell["execution_count"] = None


def sync_notebook(path: Path, repo: str, write: bool) -> list[str]:
    """Problems found in one notebook (fixed on disk when `write`)."""
    raw = path.read_text(encoding="utf-8")
    nb = json.loads(raw)
    cells = nb["cells"]
    found = [i for i, c in enumerate(cells) if is_install_cell(c)]
    if len(found) != 1:
        return [f"{path.name}: expected one install cell (a code cell running {project.INSTALL_SCRIPT} or with "
                f"%pip), found {len(found)}"]
    i = found[0]
    wanted = {i: project.install_cell(repo)}
    if i > 0 and cells[i - 1]["cell_type"] == "markdown":
        wanted[i - 1] = project.INSTALL_NOTE
    problems = [f"{path.name}: cell {j} differs from cocos_lib/notebook/project.py ({'install cell' if j == i else 'its note'})"
                for j, text in sorted(wanted.items()) if _source(cells[j]) != text]
    if write and problems:
        for j, text in wanted.items():
            if _source(cells[j]) != text:
                _set_source(cells[j], text)
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + ("\n" if raw.endswith("\n") else ""),
                        encoding="utf-8")
    return problems


def sync_readme(path: Path, names: list[str], repo: str, write: bool) -> list[str]:
    """Every Colab link in the README must open `repo`; every notebook needs its badge."""
    text = path.read_text(encoding="utf-8")
    fixed = _COLAB_LINK.sub(lambda m: project.colab_url(m.group(1), repo), text)
    problems = [f"{path.name}: Colab link {m.group(0)} is not {project.colab_url(m.group(1), repo)}"
                for m in _COLAB_LINK.finditer(text) if m.group(0) != project.colab_url(m.group(1), repo)]
    problems += [f"{path.name}: no Colab badge for {name}" for name in names if project.badge(name, repo) not in fixed]
    if write and fixed != text:
        path.write_text(fixed, encoding="utf-8")
    return problems


def sync(root: Path = ROOT, repo: str | None = None, write: bool = True) -> list[str]:
    """Bring badges and install cells in line with REPO (or set REPO = repo first); return the
    problems found before writing (all of them when write=False)."""
    if repo is not None and write:
        set_repo(root, repo)
    repo = repo or current_repo(root)
    paths = notebooks(root)
    problems = [p for nb in paths for p in sync_notebook(nb, repo, write)]
    problems += sync_readme(root / "README.md", [p.name for p in paths], repo, write)
    if repo != current_repo(root):
        problems.insert(0, f"cocos_lib/notebook/project.py: REPO is {current_repo(root)!r}, not {repo!r}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", help="GitHub owner/name to write into cocos_lib/notebook/project.py first")
    ap.add_argument("--check", action="store_true", help="only report what disagrees; exit 1 if anything does")
    ap.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    args = ap.parse_args(argv)
    try:
        problems = sync(args.root, args.repo, write=not args.check)
    except project.ProjectError as e:
        print(f"sync_project: error: {e}", file=sys.stderr)
        return 2
    for line in problems:
        print(("mismatch: " if args.check else "rewrote: ") + line)
    if args.check:
        return 1 if problems else 0
    print(f"badges and install cells use {args.repo or current_repo(args.root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
