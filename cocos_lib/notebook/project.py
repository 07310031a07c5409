"""Where the project lives: the one GitHub address that the README's Colab badges and every
notebook's install cell are generated from.

    python tools/sync_project.py                     # rewrite badges and install cells from REPO
    python tools/sync_project.py --repo owner/name   # set REPO here, then rewrite them
    python tools/sync_project.py --check             # exit 1 if any of them disagrees

REPO stays the placeholder "OWNER/cocos" until the repository is published; the install cell
then needs a local copy of the repo (an unzipped upload or a checkout) and says so.

The install cell runs before cocos_lib is installed, so it cannot import this module: it is a short
text that `install_cell` writes. It finds cocos_lib/notebook/install.py in a copy of the repo near the
notebook (or downloads GitHub's) and runs that file by path; install.py (stdlib only, tests/test_install.py)
chooses the source, runs pip and reports changed versions. tests/test_project.py executes the cell with a fake Colab.
Stdlib only.
"""
from __future__ import annotations

import re

from cocos_lib.notebook import install
from cocos_lib.notebook.install import PACKAGE, PLACEHOLDER, WATCHED  # noqa: F401  (defined once, in install.py)

REPO = "OWNER/cocos"            # GitHub "owner/name"; the placeholder (install.PLACEHOLDER) until the repo is published
BRANCH = "main"                 # the branch the Colab badges open (and the cell downloads install.py from)
INSTALL_SCRIPT = "cocos_lib/notebook/install.py"  # what the install cell runs, relative to the repo root
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
REPO = "@REPO@"  # GitHub owner/name (tools/sync_project.py writes it; "@PLACEHOLDER@" until published)
if "google.colab" in sys.modules:  # elsewhere this cell does nothing; @SCRIPT@ does the work
    import runpy, urllib.request
    from pathlib import Path
    here, rel = Path.cwd(), "@SCRIPT@"  # in a copy of the repo: here, above, or one level below
    found = [str(d / rel) for d in (here, *here.parents, *sorted(here.iterdir())) if (d / rel).is_file()]
    if not found and REPO == "@PLACEHOLDER@":
        raise SystemExit("@MESSAGE@")
    if not found:  # no copy: GitHub's install.py, which installs from GitHub
        found = [urllib.request.urlretrieve(f"https://raw.githubusercontent.com/{REPO}/@BRANCH@/{rel}")[0]]
    runpy.run_path(found[0])["main"]([REPO])'''


def install_cell(repo: str = REPO) -> str:
    """The exact source of every notebook's install cell for `repo`: on Colab it looks for INSTALL_SCRIPT in the
    folders install.candidate_folders names (here, its parents, one level below; in that order), else downloads
    GitHub's, and runs its main with `repo`."""
    values = {"@REPO@": check_repo(repo), "@PLACEHOLDER@": PLACEHOLDER, "@SCRIPT@": INSTALL_SCRIPT,
              "@MESSAGE@": install.PLACEHOLDER_MESSAGE, "@BRANCH@": BRANCH}
    text = _INSTALL_CELL
    for key, value in values.items():
        text = text.replace(key, value)
    return text
