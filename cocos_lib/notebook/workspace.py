"""Where a notebook reads and writes, and what it does when an earlier notebook's result is missing.

    WORK_DIR, FIGURES_DIR, RUN_DIR = resolve_dirs(WORK_DIR, FIGURES_DIR, RUN_DIR)

WORK_DIR None: the root of this repository when the notebook runs inside a checkout of it
(Jupyter, papermill and `make run` start the kernel in notebooks/), else the current directory
(/content on Colab). FIGURES_DIR / RUN_DIR None: WORK_DIR/figures and WORK_DIR/runs. Every path
comes back absolute; a relative one is taken from the current directory. On Colab a folder on
Google Drive as WORK_DIR keeps runs across sessions.

IF_MISSING (a notebook parameter) says what happens when a result from an earlier notebook is
absent: "train" produces it here after printing what that costs; "stop" raises MissingResult with
what to run. Nothing is retrained silently. Stdlib only.
"""
from __future__ import annotations

import os
from pathlib import Path

from cocos_lib.notebook.project import PACKAGE

IF_MISSING = ("train", "stop")


class MissingResult(RuntimeError):
    """An earlier notebook's result is absent and IF_MISSING="stop"; the message says what to run."""


class WorkspaceError(ValueError):
    """A bad WORK_DIR / IF_MISSING value, one line."""


def is_repo_root(folder: Path) -> bool:
    """`folder` holds this project's pyproject.toml (name = "cocos-lib")."""
    toml = folder / "pyproject.toml"
    return toml.is_file() and f'name = "{PACKAGE}"' in toml.read_text(encoding="utf-8", errors="replace")


def repo_root(start: str | os.PathLike | None = None) -> Path | None:
    """The checkout of this repo that `start` (default: the current directory) is in, or None."""
    here = Path(start if start is not None else Path.cwd()).resolve()
    return next((folder for folder in (here, *here.parents) if is_repo_root(folder)), None)


def _absolute(path: str | os.PathLike, cwd: Path) -> Path:
    p = Path(path).expanduser()
    return (p if p.is_absolute() else cwd / p).resolve()


def resolve_dirs(work_dir: str | os.PathLike | None = None, figures_dir: str | os.PathLike | None = None,
                 run_dir: str | os.PathLike | None = None,
                 cwd: str | os.PathLike | None = None) -> tuple[Path, Path, Path]:
    """(WORK_DIR, FIGURES_DIR, RUN_DIR), absolute (see the module docstring)."""
    here = Path(cwd if cwd is not None else Path.cwd()).resolve()
    if work_dir is not None:
        work = _absolute(work_dir, here)
        if work.exists() and not work.is_dir():
            raise WorkspaceError(f"WORK_DIR={str(work_dir)!r}: exists and is not a folder")
    else:
        work = repo_root(here) or here
    figures = _absolute(figures_dir, here) if figures_dir is not None else work / "figures"
    runs = _absolute(run_dir, here) if run_dir is not None else work / "runs"
    return work, figures, runs


def on_missing(what: str, expected: str | os.PathLike, producer: str, if_missing: str, cost: str = "",
               out=print) -> None:
    """Called when `what` (e.g. "notebook 03's trained policy") is not at `expected`.

    "train": prints that it is produced here instead, and `cost` (an estimate), then returns;
    "stop": raises MissingResult naming `producer` (the notebook to run first) and the parameters."""
    if if_missing not in IF_MISSING:
        raise WorkspaceError(f"IF_MISSING={if_missing!r}: expected one of {', '.join(IF_MISSING)}")
    where = (f"{what} is not in {expected}: run {producer} first with the same RUN_DIR (on Colab a new runtime starts "
             "empty: a WORK_DIR on Google Drive keeps runs)")
    if if_missing == "stop":
        raise MissingResult(f"{where}, or set IF_MISSING='train' to produce it here")
    out(f"{where}. IF_MISSING='train': producing it here" + (f"; {cost}" if cost else ""))
