"""Where the project lives: the one GitHub address that the README's Colab badges and every
notebook's install cell are generated from.

    python tools/sync_project.py                     # rewrite badges and install cells from REPO
    python tools/sync_project.py --repo owner/name   # set REPO here, then rewrite them
    python tools/sync_project.py --check             # exit 1 if any of them disagrees

REPO stays the placeholder "OWNER/cocos" until the repository is published; the install cell
then needs a local copy of the repo (an unzipped upload or a checkout) and says so.

The install cell runs before cocos_lib is installed, so it cannot import this module: it is a
self-contained text (stdlib and %pip only) that `install_cell` writes, and
tests/test_project.py executes with a fake Colab.
Stdlib only.
"""
from __future__ import annotations

import re

REPO = "OWNER/cocos"            # GitHub "owner/name"; the placeholder until the repo is published
PLACEHOLDER = "OWNER/cocos"     # what REPO holds before publication
BRANCH = "main"                 # the branch the Colab badges open
PACKAGE = "cocos-lib"           # the distribution name in pyproject.toml
WATCHED = ("transformers", "tokenizers", "peft", "ipywidgets", "datasets")  # a new version needs a restart
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
_REPO_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")


class ProjectError(ValueError):
    """A malformed repository address, one line."""


def check_repo(repo: str) -> str:
    """`repo` if it is a GitHub "owner/name", else ProjectError."""
    if not _REPO_RE.match(repo or ""):
        raise ProjectError(f"repo {repo!r}: expected a GitHub 'owner/name', e.g. 'jeonghun3572/cocos'")
    return repo


def is_placeholder(repo: str = REPO) -> bool:
    return repo == PLACEHOLDER


def git_url(repo: str = REPO) -> str:
    """The pip requirement that installs the package from GitHub."""
    return f"git+https://github.com/{check_repo(repo)}"


def colab_url(notebook: str, repo: str = REPO) -> str:
    """The address that opens notebooks/<notebook> of `repo` in Colab."""
    return f"https://colab.research.google.com/github/{check_repo(repo)}/blob/{BRANCH}/notebooks/{notebook}"


def badge(notebook: str, repo: str = REPO) -> str:
    """The README's markdown badge for one notebook file name, e.g. "03_training.ipynb"."""
    return f"[![Open In Colab]({BADGE_IMAGE})]({colab_url(notebook, repo)})"


INSTALL_NOTE = (
    "**On Colab** the next cell installs the library; for the `colab` profile pick *Runtime > Change runtime type >"
    " T4 GPU* first. It installs this repository's folder when the notebook sits in a checkout or an unzipped copy"
    " (the current directory, a folder above it, or one below it such as `/content/cocos-main`), else the GitHub"
    " repository `REPO`; Colab's own torch is kept. If it names packages that changed version, use *Runtime >"
    " Restart session* and run the notebook again. Anywhere else the cell does nothing."
)

_INSTALL_CELL = '''\
import sys
from importlib import metadata
from pathlib import Path

IN_COLAB = "google.colab" in sys.modules
REPO = "@REPO@"  # GitHub owner/name (tools/sync_project.py writes it; "@PLACEHOLDER@" until published)

def cocos_source(here: Path) -> str:
    """This repo's folder (a checkout or unzipped upload: here, above, or one level below), else GitHub."""
    for folder in [here, *here.parents, *sorted(p for p in here.iterdir() if p.is_dir())]:
        toml = folder / "pyproject.toml"
        if toml.is_file() and 'name = "@PACKAGE@"' in toml.read_text(errors="replace"):
            return str(folder)
    if REPO == "@PLACEHOLDER@":
        raise SystemExit("no copy of the repo found and REPO is a placeholder: upload and unzip the repo here")
    return f"git+https://github.com/{REPO}"

if IN_COLAB:  # elsewhere this cell does nothing; Colab's own torch is kept
    SOURCE = cocos_source(Path.cwd())
    before = {m: metadata.version(m) for m in @WATCHED@ if m in sys.modules}
    %pip install -q "{SOURCE}"
    changed = [f"{m} {v} -> {metadata.version(m)}" for m, v in before.items() if metadata.version(m) != v]
    print(f"cocos_lib installed from {SOURCE}")
    if changed:
        print(f"{', '.join(changed)}: use Runtime > Restart session, then run the notebook again")'''


def install_cell(repo: str = REPO) -> str:
    """The exact source of every notebook's install cell for `repo` (no pip flag upgrades anything:
    Colab's torch satisfies pyproject's `torch>=2.3` and is left alone)."""
    values = {"@REPO@": check_repo(repo), "@PLACEHOLDER@": PLACEHOLDER, "@PACKAGE@": PACKAGE,
              "@WATCHED@": repr(WATCHED)}
    text = _INSTALL_CELL
    for key, value in values.items():
        text = text.replace(key, value)
    return text
