"""The one call that opens every numbered notebook: the profile, the folders, the sizes and the time ahead.

    P, PROFILE, WORK_DIR, FIGURES_DIR, RUN_DIR = setup("03", PROFILE, WORK_DIR, FIGURES_DIR, RUN_DIR,
                                                      smoke=SMOKE, train_updates=UPDATES)

It does, in this order, what each notebook used to spell out in six or seven lines:
1. `runtime.choose_profile`: PROFILE None -> "colab" on a CUDA GPU, "tiny" on a CPU; prints one line saying which;
2. `workspace.resolve_dirs`: WORK_DIR, FIGURES_DIR and RUN_DIR made absolute (None: the repo root, or the current
   folder outside a checkout, and figures/ and runs/ inside it);
3. `notebook.profile.notebook_profile`: the profile's sizes, `sizes` overriding them (None leaves the profile's value);
4. `P.start()`: torch's threads and quiet loading bars;
5. `estimates.show`: the notebook's long cells and how long they will take, when it has any.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from cocos_lib.notebook import estimates, runtime
from cocos_lib.hardware import Hardware
from cocos_lib.notebook.profile import NotebookProfile, notebook_profile
from cocos_lib.notebook.workspace import resolve_dirs

PathLike = str | os.PathLike | None


def setup(notebook: str, profile: str | None = None, work_dir: PathLike = None, figures_dir: PathLike = None,
          run_dir: PathLike = None, *, smoke: bool = False, k: int = 4, title: str = "long cells ahead",
          hw: Hardware | None = None, out: Callable[[str], None] = print,
          **sizes) -> tuple[NotebookProfile, str, Path, Path, Path]:
    """(P, PROFILE, WORK_DIR, FIGURES_DIR, RUN_DIR) for notebook "NN" (see the module docstring).
    k: samples per task in notebook 02's estimate; title: the estimate's heading; hw: the hardware (detected)."""
    hw = hw if hw is not None else runtime.detect()
    name = runtime.choose_profile(profile, hw=hw, out=out)
    work, figures, runs = resolve_dirs(work_dir, figures_dir, run_dir)
    P = notebook_profile(name, smoke=smoke, **sizes)
    P.start()
    ahead = estimates.for_notebook(notebook, P, hw.name, k=k)
    if ahead:
        estimates.show(ahead, title, out)
    return P, name, work, figures, runs
