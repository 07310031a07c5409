"""project.py and tools/sync_project.py: one repository address for the README badges and every
notebook's install cell; the install cell executed with a fake IPython shell and a fake Colab."""
import importlib.util
import json
import re
import shutil
import sys
import types
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


class FakeShell:
    """get_ipython() of the cell: records each line magic with IPython's {name} expansion applied;
    `pip` then swaps the installed versions for `after` (what pip would have installed)."""

    def __init__(self, versions: dict, after: dict):
        self.calls, self.versions, self.after = [], versions, after

    def run_line_magic(self, name, line):
        frame = sys._getframe(1)
        self.calls.append((name, line.format(**{**frame.f_globals, **frame.f_locals})))
        self.versions.update(self.after)


def run_cell(monkeypatch, cwd, repo=project.REPO, colab=True, imported=None, after=None):
    """Execute the install cell for `repo` in `cwd`; `imported`: {module: version} already loaded."""
    versions = dict(imported or {})
    shell = FakeShell(versions, after or {})
    for name in project.WATCHED:
        monkeypatch.delitem(sys.modules, name, raising=False)
    for name in versions:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    if colab:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(metadata, "version", lambda dist: versions[dist])
    monkeypatch.chdir(cwd)
    code = TransformerManager().transform_cell(project.install_cell(repo))
    namespace = {"get_ipython": lambda: shell}
    exec(compile(code, "<install cell>", "exec"), namespace)
    return shell.calls, namespace


def test_outside_colab_the_cell_does_nothing(monkeypatch, tmp_path, capsys):
    calls, ns = run_cell(monkeypatch, tmp_path, colab=False)
    assert calls == [] and ns["IN_COLAB"] is False and capsys.readouterr().out == ""


def test_colab_installs_an_unzipped_copy_below_the_current_dir(monkeypatch, tmp_path, capsys):
    _fake_repo(tmp_path / "other", name="not-cocos")           # another project's pyproject is not taken
    repo = _fake_repo(tmp_path / "cocos-main")
    calls, ns = run_cell(monkeypatch, tmp_path)
    assert calls == [("pip", f'install -q "{repo}"')] and ns["SOURCE"] == str(repo)
    assert capsys.readouterr().out == f"cocos_lib installed from {repo}\n"


def test_colab_installs_the_checkout_the_notebook_sits_in(monkeypatch, tmp_path):
    repo = _fake_repo(tmp_path / "fork")
    (repo / "notebooks").mkdir()
    calls, _ = run_cell(monkeypatch, repo / "notebooks")
    assert calls == [("pip", f'install -q "{repo}"')]


def test_colab_without_a_copy_installs_from_github(monkeypatch, tmp_path):
    calls, ns = run_cell(monkeypatch, tmp_path, repo="someone/cocos-fork")
    assert ns["REPO"] == "someone/cocos-fork"
    assert calls == [("pip", 'install -q "git+https://github.com/someone/cocos-fork"')]


def test_colab_placeholder_without_a_copy_says_what_to_do(monkeypatch, tmp_path):
    with pytest.raises(SystemExit, match="no copy of the repo found and REPO is a placeholder: upload and unzip"):
        run_cell(monkeypatch, tmp_path, repo=project.PLACEHOLDER)


def test_restart_hint_names_each_package_that_changed(monkeypatch, tmp_path, capsys):
    repo = _fake_repo(tmp_path / "cocos")
    run_cell(monkeypatch, tmp_path, imported={"ipywidgets": "7.7.1", "transformers": "4.57.0", "peft": "0.17.0"},
             after={"ipywidgets": "8.1.5", "transformers": "4.58.0"})
    assert capsys.readouterr().out == (
        f"cocos_lib installed from {repo}\n"
        "transformers 4.57.0 -> 4.58.0, ipywidgets 7.7.1 -> 8.1.5: use Runtime > Restart session, then run the "
        "notebook again\n")


def test_no_hint_when_nothing_imported_changed(monkeypatch, tmp_path, capsys):
    repo = _fake_repo(tmp_path / "cocos")
    run_cell(monkeypatch, tmp_path, imported={"transformers": "4.57.0"}, after={"datasets": "4.0.0"})
    assert capsys.readouterr().out == f"cocos_lib installed from {repo}\n"


def test_install_never_upgrades_or_reinstalls_torch():
    cell = project.install_cell()
    pip = [line for line in cell.splitlines() if "%pip" in line]
    assert pip == ['    %pip install -q "{SOURCE}"']
    deps = re.search(r"dependencies = \[(.*?)\]", (ROOT / "pyproject.toml").read_text(), re.S).group(1)
    torch = re.findall(r'"(torch[^"]*)"', deps)
    assert torch == ["torch>=2.3"]                  # a lower bound only: Colab's own build satisfies it
    assert '"ipywidgets>=7.6"' in deps              # Colab ships ipywidgets 7: no upgrade forced over it
    assert len(cell.splitlines()) <= 25


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
