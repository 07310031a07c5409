"""project.py and tools/sync_project.py: one repository address for the README badges and every
notebook's install cell; the install cell executed with a fake Colab, running cocos_lib/notebook/install.py
with pip and the GitHub download faked (tests/test_install.py tests install.py itself)."""
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import types
import urllib.request
import zlib
from importlib import metadata
from pathlib import Path

import pytest
from IPython.core.inputtransformer2 import TransformerManager

from cocos_lib.notebook import project

ROOT = Path(__file__).resolve().parent.parent


def _sync_tool():
    spec = importlib.util.spec_from_file_location("sync_project", ROOT / "tools" / "sync_project.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_repo(folder: Path, name: str = "cocos-lib") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(f'[project]\nname = "{name}"\nversion = "0.1.0"\n')
    return folder


class Pip:
    """subprocess.run as install.py calls it: records each command; `after` are the versions pip leaves."""

    def __init__(self, versions: dict, after: dict, returncode: int = 0):
        self.calls, self.versions, self.after, self.returncode = [], versions, after, returncode

    def __call__(self, cmd, **kwargs):
        self.calls.append(cmd)
        self.versions.update(self.after)
        return subprocess.CompletedProcess(cmd, self.returncode, "", "ERROR: pip failed\n" if self.returncode else "")


def _with_install_script(folder: Path) -> Path:
    """A copy of the repo as the cell finds it: its pyproject and cocos_lib/notebook/install.py."""
    _fake_repo(folder)
    (folder / project.INSTALL_SCRIPT).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / project.INSTALL_SCRIPT, folder / project.INSTALL_SCRIPT)
    return folder


def run_cell(monkeypatch, cwd, repo=project.REPO, colab=True, imported=None, after=None, returncode=0):
    """Execute the install cell for `repo` in `cwd` (pip faked); `imported`: {module: version} already loaded.
    Returns the pip commands, the URLs downloaded and the cell's namespace."""
    versions = dict(imported or {})
    pip, downloads = Pip(versions, after or {}, returncode), []

    def urlretrieve(url, *args):        # GitHub's install.py: this repo's
        downloads.append(url)
        return str(ROOT / project.INSTALL_SCRIPT), None

    for name in project.WATCHED:
        monkeypatch.delitem(sys.modules, name, raising=False)
    for name in versions:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    if colab:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(metadata, "version", lambda dist: versions[dist])
    monkeypatch.setattr(subprocess, "run", pip)
    monkeypatch.setattr(urllib.request, "urlretrieve", urlretrieve)
    monkeypatch.chdir(cwd)
    code = TransformerManager().transform_cell(project.install_cell(repo))
    assert code == project.install_cell(repo) + "\n"          # plain Python: no magic left for IPython to rewrite
    namespace = {}
    exec(compile(code, "<install cell>", "exec"), namespace)
    return pip.calls, downloads, namespace


def _pip(source) -> list:
    return [sys.executable, "-m", "pip", "install", "-q", str(source)]


def test_outside_colab_the_cell_does_nothing(monkeypatch, tmp_path, capsys):
    _with_install_script(tmp_path / "cocos-main")
    calls, downloads, ns = run_cell(monkeypatch, tmp_path, colab=False)
    assert calls == downloads == [] and capsys.readouterr().out == ""
    assert set(ns) == {"__builtins__", "sys", "REPO"}


def test_colab_installs_an_unzipped_copy_below_the_current_dir(monkeypatch, tmp_path, capsys):
    _fake_repo(tmp_path / "other", name="not-cocos")           # another project's pyproject is not taken
    repo = _with_install_script(tmp_path / "cocos-main")
    calls, downloads, ns = run_cell(monkeypatch, tmp_path)
    assert calls == [_pip(repo)] and downloads == []
    assert ns["found"] == [str(repo / project.INSTALL_SCRIPT)]      # the copy's own install.py ran
    assert capsys.readouterr().out == f"cocos_lib installed from {repo}\n"


def test_colab_installs_the_checkout_the_notebook_sits_in(monkeypatch, tmp_path):
    repo = _with_install_script(tmp_path / "fork")
    (repo / "notebooks").mkdir()
    calls, downloads, _ = run_cell(monkeypatch, repo / "notebooks")
    assert calls == [_pip(repo)] and downloads == []


def test_the_cell_and_install_py_pick_the_same_copy(monkeypatch, tmp_path):
    """A copy above and another below: both look above first, so the install.py that runs installs its own copy."""
    above = _with_install_script(tmp_path / "above")
    below = _with_install_script(above / "notebooks" / "cocos-main")
    calls, _, ns = run_cell(monkeypatch, below.parent)
    assert ns["found"][0] == str(above / project.INSTALL_SCRIPT) and calls == [_pip(above)]


def test_colab_ignores_a_copy_two_levels_below(monkeypatch, tmp_path):
    _with_install_script(tmp_path / "upload" / "cocos-main")
    with pytest.raises(SystemExit, match="no copy of the repo found"):
        run_cell(monkeypatch, tmp_path, repo=project.PLACEHOLDER)


def test_colab_without_a_copy_runs_githubs_install_py(monkeypatch, tmp_path, capsys):
    calls, downloads, ns = run_cell(monkeypatch, tmp_path, repo="someone/cocos-fork")
    assert ns["REPO"] == "someone/cocos-fork"
    assert downloads == ["https://raw.githubusercontent.com/someone/cocos-fork/main/cocos_lib/notebook/install.py"]
    assert calls == [_pip("git+https://github.com/someone/cocos-fork")]
    assert capsys.readouterr().out == "cocos_lib installed from git+https://github.com/someone/cocos-fork\n"


def test_colab_placeholder_without_a_copy_says_what_to_do(monkeypatch, tmp_path):
    with pytest.raises(SystemExit) as e:
        run_cell(monkeypatch, tmp_path, repo=project.PLACEHOLDER)
    assert str(e.value) == "no copy of the repo found and REPO is a placeholder: upload and unzip the repo here"


def test_a_failing_pip_stops_the_cell_in_one_line(monkeypatch, tmp_path, capsys):
    repo = _with_install_script(tmp_path / "cocos")
    with pytest.raises(SystemExit) as e:
        run_cell(monkeypatch, tmp_path, returncode=1)
    assert str(e.value) == f"pip install {repo} failed with return code 1 (its output is above)"
    assert capsys.readouterr().err == "ERROR: pip failed\n"


def test_restart_hint_names_each_package_that_changed(monkeypatch, tmp_path, capsys):
    repo = _with_install_script(tmp_path / "cocos")
    run_cell(monkeypatch, tmp_path, imported={"ipywidgets": "7.7.1", "transformers": "4.57.0", "peft": "0.17.0"},
             after={"ipywidgets": "8.1.5", "transformers": "4.58.0"})
    assert capsys.readouterr().out == (
        f"cocos_lib installed from {repo}\n"
        "transformers 4.57.0 -> 4.58.0, ipywidgets 7.7.1 -> 8.1.5: use Runtime > Restart session, then run the "
        "notebook again\n")


def test_no_hint_when_nothing_imported_changed(monkeypatch, tmp_path, capsys):
    repo = _with_install_script(tmp_path / "cocos")
    run_cell(monkeypatch, tmp_path, imported={"transformers": "4.57.0"}, after={"datasets": "4.0.0"})
    assert capsys.readouterr().out == f"cocos_lib installed from {repo}\n"


def test_the_cell_is_short_and_never_upgrades_or_reinstalls_torch():
    cell = project.install_cell()
    assert "%pip" not in cell and "torch" not in cell and "upgrade" not in cell
    assert len(cell.splitlines()) <= 12
    deps = re.search(r"dependencies = \[(.*?)\]", (ROOT / "pyproject.toml").read_text(), re.S).group(1)
    torch = re.findall(r'"(torch[^"]*)"', deps)
    assert torch == ["torch>=2.3"]                  # a lower bound only: Colab's own build satisfies it
    assert '"ipywidgets>=7.6"' in deps              # Colab ships ipywidgets 7: no upgrade forced over it


def test_repo_address_helpers():
    assert project.git_url("a/b") == "git+https://github.com/a/b"
    assert project.colab_url("03_training.ipynb", "a/b") == (
        "https://colab.research.google.com/github/a/b/blob/main/notebooks/03_training.ipynb")
    assert project.badge("03_training.ipynb", "a/b") == (
        "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        "(https://colab.research.google.com/github/a/b/blob/main/notebooks/03_training.ipynb)")
    assert project.is_placeholder() == (project.REPO == "OWNER/cocos")
    for bad in ("owner", "a/b/c", "", "https://github.com/a/b", "-a/b"):
        with pytest.raises(project.ProjectError, match="expected a GitHub 'owner/name'"):
            project.check_repo(bad)


def test_readme_and_every_notebook_agree_with_the_constant():
    assert _sync_tool().sync(ROOT, write=False) == []


def test_sync_rewrites_a_copy_for_a_fork(tmp_path):
    for part in ("README.md", "notebooks", "cocos_lib/notebook/project.py"):
        src, dst = ROOT / part, tmp_path / part
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy(src, dst)
    tool = _sync_tool()
    assert tool.sync(tmp_path, "me/fork", write=False)[0] == "cocos_lib/notebook/project.py: REPO is 'OWNER/cocos', not 'me/fork'"
    assert tool.main(["--root", str(tmp_path), "--repo", "me/fork"]) == 0
    assert tool.current_repo(tmp_path) == "me/fork" and tool.sync(tmp_path, write=False) == []
    readme = (tmp_path / "README.md").read_text()
    assert project.badge("05_ablations.ipynb", "me/fork") in readme and "OWNER/cocos/blob" not in readme
    cells = json.loads((tmp_path / "notebooks" / "04_evaluation.ipynb").read_text())["cells"]
    assert any("".join(c["source"]) == project.install_cell("me/fork") for c in cells)
    assert tool.main(["--root", str(tmp_path), "--check"]) == 0
    assert tool.main(["--root", str(tmp_path), "--check", "--repo", "other/x"]) == 1
    assert tool.main(["--root", str(tmp_path), "--repo", "not a repo"]) == 2
    assert (ROOT / "README.md").read_text().count("OWNER/cocos/blob/main") == 6     # the real README untouched


OLD_CELL = '''import sys
from importlib import metadata

IN_COLAB = "google.colab" in sys.modules
if IN_COLAB:
    %pip install -q "{SOURCE}"'''


def _notebook(cells: list) -> dict:
    return {"cells": cells, "metadata": {"kernelspec": {"name": "python3"}}, "nbformat": 4, "nbformat_minor": 5}


def _cell(kind: str, source: str, **extra) -> dict:
    return {"cell_type": kind, "id": f"c{zlib.crc32(source.encode()):08x}", "metadata": {"tags": []},
            "source": source.splitlines(keepends=True), **extra}


def test_every_notebook_holds_the_same_install_cell_below_the_note():
    tool = _sync_tool()
    for path in tool.notebooks(ROOT):
        cells = json.loads(path.read_text())["cells"]
        found = [i for i, c in enumerate(cells) if tool.is_install_cell(c)]
        assert len(found) == 1, path.name
        assert "".join(cells[found[0]]["source"]) == project.install_cell(), path.name
        assert "".join(cells[found[0] - 1]["source"]) == project.INSTALL_NOTE, path.name


def test_sync_replays_onto_an_older_notebook_touching_only_the_install_cells_source(tmp_path):
    """Another branch's notebook with the older %pip cell: the same new cell, every other byte kept; a cell without
    outputs keeps its execution count, one with outputs loses both."""
    tool = _sync_tool()
    other = _cell("code", "x = 1", execution_count=3, outputs=[{"output_type": "stream", "name": "stdout",
                                                                    "text": ["1\n"]}])
    for outputs, count in (([], 1), ([{"output_type": "stream", "name": "stdout", "text": ["installed\n"]}], None)):
        nb = _notebook([_cell("markdown", "# Title"), _cell("markdown", project.INSTALL_NOTE),
                        _cell("code", OLD_CELL, execution_count=1, outputs=outputs), other])
        path = tmp_path / "07_old.ipynb"
        path.write_text(json.dumps(nb, indent=1) + "\n")
        assert tool.sync_notebook(path, "me/fork", write=True) == [
            "07_old.ipynb: cell 2 differs from cocos_lib/notebook/project.py (install cell)"]
        new = json.loads(path.read_text())
        assert "".join(new["cells"][2]["source"]) == project.install_cell("me/fork")
        assert new["cells"][2]["outputs"] == [] and new["cells"][2]["execution_count"] == count
        nb["cells"][2].update(source=new["cells"][2]["source"], outputs=[], execution_count=count)
        assert new == nb and path.read_text() == json.dumps(nb, indent=1) + "\n"
        assert tool.sync_notebook(path, "me/fork", write=False) == []           # the check accepts it


def test_sync_refuses_a_notebook_without_exactly_one_install_cell(tmp_path):
    tool = _sync_tool()
    for cells in ([], [_cell("code", OLD_CELL), _cell("code", project.install_cell())]):
        path = tmp_path / "08_x.ipynb"
        path.write_text(json.dumps(_notebook(cells)))
        assert tool.sync_notebook(path, "me/fork", write=True) == [
            f"08_x.ipynb: expected one install cell (a code cell running {project.INSTALL_SCRIPT} or with %pip), "
            f"found {len(cells)}"]
