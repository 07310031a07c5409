"""Install cocos_lib on Colab: what every notebook's install cell runs, by path, before the library is importable.

    python cocos_lib/notebook/install.py owner/name       # what the cell does: runpy.run_path(this)["main"]([REPO])

It installs this repository's folder when one sits near the current directory (the directory itself, a
folder above it, or one level below it, such as an unzipped upload in /content/cocos-main), else the GitHub
repository REPO; with REPO still the placeholder and no folder found it stops and says what to do. pip gets
only the source: no --upgrade and never torch, so Colab's own torch is kept. Then it names the packages the
notebook had already imported whose version pip changed (those need a restart of the session).

Stdlib only, and it never imports cocos_lib: it runs before the package is installed, often as a file
downloaded on its own (tests/test_install.py checks its imports).
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from pathlib import Path

PLACEHOLDER = "OWNER/cocos"     # REPO until the repository is published
PACKAGE = "cocos-lib"           # the distribution name in pyproject.toml
WATCHED = ("transformers", "tokenizers", "peft", "ipywidgets", "datasets")  # a new version needs a restart
PLACEHOLDER_MESSAGE = "no copy of the repo found and REPO is a placeholder: upload and unzip the repo here"

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def candidate_folders(start: Path) -> list[Path]:
    """Where a copy of the repo may sit: `start`, its parents, then its immediate subdirectories (sorted).
    Never deeper: a recursive walk of /content would walk a mounted Google Drive."""
    try:
        entries = sorted(start.iterdir())
    except OSError:                     # unreadable: the folder itself and its parents still count
        entries = []
    return [start, *start.parents, *(p for p in entries if _is_dir(p))]


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:                     # e.g. a mount that refuses a stat
        return False


def is_copy(folder: Path, package: str = PACKAGE) -> bool:
    """True when `folder` holds a pyproject.toml whose project is `package` (another project's is not taken)."""
    toml = folder / "pyproject.toml"
    try:
        text = toml.read_text(encoding="utf-8", errors="replace") if toml.is_file() else ""
    except OSError:
        return False
    return re.search(rf'^name\s*=\s*"{re.escape(package)}"\s*$', text, re.M) is not None


def find_copy(start: Path) -> Path | None:
    """The first folder of `candidate_folders(start)` that is a copy of this repo, or None."""
    return next((folder for folder in candidate_folders(start) if is_copy(folder)), None)


def choose_source(start: Path, repo: str) -> str:
    """What pip installs: a copy of the repo near `start`, else GitHub's `repo`; SystemExit (one line) when
    there is no copy and `repo` is still the placeholder."""
    copy = find_copy(start)
    if copy is not None:
        return str(copy)
    if repo == PLACEHOLDER:
        raise SystemExit(PLACEHOLDER_MESSAGE)
    return f"git+https://github.com/{repo}"


def pip_command(source: str) -> list[str]:
    """pip of this interpreter, quiet, installing `source` and only what it needs (no --upgrade)."""
    return [sys.executable, "-m", "pip", "install", "-q", source]


def install(source: str, run: Runner = subprocess.run) -> None:
    """Run pip on `source`, relaying what it prints (a notebook does not show a child's own output); a pip
    failure is a one-line SystemExit with pip's return code, not a traceback."""
    done = run(pip_command(source), capture_output=True, text=True)
    if done.stdout:
        print(done.stdout, end="", flush=True)
    if done.stderr:
        print(done.stderr, end="", file=sys.stderr, flush=True)
    if done.returncode != 0:
        raise SystemExit(f"pip install {source} failed with return code {done.returncode} (its output is above)")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def imported_versions(modules: Iterable[str] | None = None, watched: Iterable[str] = WATCHED,
                      version: Callable[[str], str | None] = _version) -> dict[str, str]:
    """{package: version} of the watched packages already imported (by default: in sys.modules)."""
    loaded = set(sys.modules if modules is None else modules)
    found = {name: version(name) for name in watched if name in loaded}
    return {name: v for name, v in found.items() if v is not None}


def changed_versions(before: Mapping[str, str], version: Callable[[str], str | None] = _version) -> list[str]:
    """"name old -> new" for each package of `before` whose installed version is no longer the same."""
    now = {name: version(name) for name in before}
    return [f"{name} {old} -> {now[name]}" for name, old in before.items() if now[name] != old]


def restart_hint(changed: list[str]) -> str | None:
    """The line that asks for a restart, or None when nothing already imported changed."""
    if not changed:
        return None
    return f"{', '.join(changed)}: use Runtime > Restart session, then run the notebook again"


def main(argv: list[str] | None = None, run: Runner = subprocess.run) -> int:
    """Install cocos_lib for the notebook in the current directory; 0 when done, else SystemExit (one line)."""
    ap = argparse.ArgumentParser(prog="install.py", description=__doc__.splitlines()[0])
    ap.add_argument("repo", nargs="?", default=PLACEHOLDER,
                    help=f"GitHub owner/name to install from when no copy is found (default: {PLACEHOLDER})")
    ap.add_argument("--start", type=Path, default=None, help="where to look for a copy (default: the current directory)")
    args = ap.parse_args(argv)
    source = choose_source(args.start or Path.cwd(), args.repo)
    before = imported_versions()
    install(source, run)
    print(f"cocos_lib installed from {source}")
    hint = restart_hint(changed_versions(before))
    if hint:
        print(hint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
