"""The numbered notebooks: structure (fast) and a SMOKE execution of 00..05 in order (slow).

The execution runs every notebook with papermill exactly as `make run` does (cwd notebooks/,
kernel python3) but with SMOKE=True and FIGURES_DIR / RUN_DIR in a temporary directory, then
checks that no cell errored and that each notebook wrote the figures it promises.
"""
from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
# notebook -> the PNGs it promises in FIGURES_DIR (fixed names)
FIGURES = {
    "00_setup_and_data": [],
    "01_reflection_failure": ["01_transitions.png", "01_edit_distance.png", "01_real_edit_distance.png"],
    "02_executor_and_rewards": ["02_reward_table_gamma0.png", "02_reward_table_gamma0.5.png",
                                "02_reward_table_gamma1.png", "02_reward_grid_progressive.png"],
    "03_training": ["03_training_curves.png"],
    "04_evaluation": ["04_transitions_base.png", "04_transitions_cocos.png", "04_acc_gains.png",
                      "04_edit_distance.png"],
    "05_ablations": ["05_ablations_accuracy.png", "05_ablations_train_acc_t1.png", "05_ablations_train_acc_t2.png"],
}
MAX_CELL_LINES = 25
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def read(name: str):
    return nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)


def test_every_numbered_notebook_is_listed():
    found = sorted(p.stem for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    assert found == sorted(FIGURES)


@pytest.mark.parametrize("name", list(FIGURES))
def test_structure(name):
    nb = read(name)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), f"{name}: no title cell"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name}: expected one cell tagged 'parameters', found {len(tagged)}"
    assert "PROFILE" in tagged[0].source and "FIGURES_DIR" in tagged[0].source
    for i, cell in enumerate(nb.cells):
        assert "PAPER.md" not in cell.source, f"{name}: cell {i} cites PAPER.md (not in the repo: docs/paper.md)"
        if cell.cell_type == "code":
            n = len(cell.source.splitlines())
            assert n <= MAX_CELL_LINES, f"{name}: code cell {i} has {n} lines (max {MAX_CELL_LINES})"


@pytest.mark.parametrize("name", list(FIGURES))
def test_colab_cell_does_nothing_outside_colab(name):
    code = [c.source for c in read(name).cells if c.cell_type == "code"]
    install = [src for src in code if "cocos_lib/notebook/install.py" in src or "%pip" in src]
    assert len(install) == 1
    lines = install[0].splitlines()
    guard = lines.index('if "google.colab" in sys.modules:  # elsewhere this cell does nothing; '
                        'cocos_lib/notebook/install.py does the work')
    assert lines[:guard] == ["import sys", lines[1]] and lines[1].startswith("REPO = ")
    assert lines[guard + 1:] and all(line.startswith("    ") for line in lines[guard + 1:])   # all of it guarded


@pytest.mark.parametrize("name", list(FIGURES))
def test_parameters_pick_the_profile_and_paths_at_run_time(name):
    """PROFILE = None (auto) and paths None (absolute, from WORK_DIR) in the committed copy: no papermill
    "injected-parameters" cell pins the profile `make run` used (tools/run_notebooks.py strips it)."""
    nb = read(name)
    assert not [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    params = next(c.source for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    for line in ("PROFILE = None", "WORK_DIR = None", "FIGURES_DIR = None"):
        assert line in params, f"{name}: no {line!r} in the parameters cell"
    assert "RUN_DIR = None" in params or name == "00_setup_and_data"
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    calls = [src for src in code if f'= setup("{name[:2]}", PROFILE, WORK_DIR, FIGURES_DIR' in src]
    assert len(calls) == 1, f"{name}: expected one session.setup call, found {len(calls)}"
    for spelled_out in ("choose_profile(", "resolve_dirs(", "notebook_profile(", "P.start()", "estimates.for_notebook("):
        assert not any(spelled_out in src for src in code), f"{name}: {spelled_out} outside session.setup"


def test_run_notebooks_strips_the_injected_cell(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location("run_notebooks", NOTEBOOKS_DIR.parent / "tools" / "run_notebooks.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("PROFILE = None", metadata={"tags": ["parameters"]}),
                                         nbformat.v4.new_code_cell('PROFILE = "tiny"', metadata={"tags": ["injected-parameters"]})])
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, path)
    tool.strip_injected(path)
    assert [c.source for c in nbformat.read(path, as_version=4).cells] == ["PROFILE = None"]


@pytest.fixture(scope="module")
def smoke_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("notebooks")
    return {"out": root / "executed", "figures": root / "figures", "runs": root / "runs"}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FIGURES))  # in order: 04 evaluates what 03 trained
def test_notebook_runs_and_writes_its_figures(name, smoke_dirs):
    import papermill as pm

    out = smoke_dirs["out"] / f"{name}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    params = {"SMOKE": True, "PROFILE": "tiny", "FIGURES_DIR": str(smoke_dirs["figures"]),  # tiny even on a GPU box
              "RUN_DIR": str(smoke_dirs["runs"])}
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    pm.execute_notebook(str(NOTEBOOKS_DIR / f"{name}.ipynb"), str(out), parameters=params, kernel_name="python3",
                        cwd=str(NOTEBOOKS_DIR), progress_bar=False, log_output=False)
    executed = nbformat.read(out, as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, f"{name}: {errors[0].get('ename')}: {errors[0].get('evalue')}"
    for fig in FIGURES[name]:
        path = smoke_dirs["figures"] / fig
        assert path.is_file(), f"{name} did not write {fig}"
        assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 1000, f"{fig} is not a real PNG"
    assert not (NOTEBOOKS_DIR / "pwned.txt").exists()


def test_run_notebooks_writes_repo_paths_relative_to_notebooks(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location("run_notebooks", NOTEBOOKS_DIR.parent / "tools" / "run_notebooks.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    root = tmp_path / "repo"
    cell = nbformat.v4.new_code_cell("print(RUN_DIR)")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"runs: {root}/runs/tiny\nroot {root}\n"),
                    nbformat.v4.new_output("execute_result", data={"text/plain": f"'{root}/figures/a.png'"})]
    path = tmp_path / "n.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), path)
    tool.relative_paths(path, root)
    outs = nbformat.read(path, as_version=4).cells[0].outputs
    assert outs[0].text == "runs: ../runs/tiny\nroot ..\n" and outs[1].data["text/plain"] == "'../figures/a.png'"


def test_every_library_import_in_the_notebooks_resolves():
    """A renamed or moved library name breaks a notebook only at run time: catch it without running them."""
    import importlib
    import importlib.util
    import re
    paths = sorted(NOTEBOOKS_DIR.glob("**/*.ipynb"))
    assert len(paths) >= len(FIGURES)
    for path in paths:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code":
                continue
            for line in cell.source.splitlines():
                m = re.match(r"\s*from (cocos_lib[\w.]*) import (.+)", line)
                if m:
                    module = importlib.import_module(m.group(1))
                    names = [n.strip().split(" as ")[0] for n in m.group(2).split(",") if n.strip()]
                    missing = [n for n in names if not hasattr(module, n)
                               and importlib.util.find_spec(f"{m.group(1)}.{n}") is None]
                    assert not missing, f"{path.name}: {line.strip()!r}: {missing} not in {m.group(1)}"
