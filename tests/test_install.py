"""cocos_lib/notebook/install.py: what every notebook's install cell runs on Colab, by path, before cocos_lib is
importable. The bounded search for a copy of the repo, the choice of source, pip (an injected runner: nothing
is really installed), the restart hint, and that the file needs nothing but the standard library."""
import ast
import subprocess
import sys
import types
from importlib import metadata
from pathlib import Path

import pytest

from cocos_lib.notebook import install, project

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "cocos_lib" / "notebook" / "install.py"


def _fake_repo(folder: Path, name: str = "cocos-lib") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(f'[project]\nname = "{name}"\nversion = "0.1.0"\n')
    return folder


class Pip:
    """A stand-in for subprocess.run: records each command, answers with `returncode` and pip's text."""

    def __init__(self, returncode: int = 0, stdout: str = "", stderr: str = "", on_call=None):
        self.calls, self.returncode, self.stdout, self.stderr, self.on_call = [], returncode, stdout, stderr, on_call

    def __call__(self, cmd, **kwargs):
        self.calls.append((cmd, kwargs))
        if self.on_call:
            self.on_call()
        return subprocess.CompletedProcess(cmd, self.returncode, self.stdout, self.stderr)


# -- the bounded search ---------------------------------------------------------------------------------------

def test_finds_a_copy_in_the_current_dir(tmp_path):
    repo = _fake_repo(tmp_path / "cocos")
    assert install.find_copy(repo) == repo


def test_finds_a_copy_above(tmp_path):
    repo = _fake_repo(tmp_path / "cocos")
    (repo / "notebooks" / "deep").mkdir(parents=True)
    assert install.find_copy(repo / "notebooks" / "deep") == repo


def test_finds_a_copy_one_level_below(tmp_path):
    _fake_repo(tmp_path / "a-other", name="not-cocos")
    repo = _fake_repo(tmp_path / "cocos-main")
    assert install.find_copy(tmp_path) == repo


def test_does_not_find_a_copy_two_levels_below(tmp_path):
    _fake_repo(tmp_path / "upload" / "cocos-main")
    assert install.find_copy(tmp_path) is None


def test_search_is_start_parents_and_immediate_subdirectories_only(tmp_path):
    for rel in ("b", "a/deeper", "c/x/y"):
        (tmp_path / rel).mkdir(parents=True)
    (tmp_path / "file.txt").write_text("not a folder")
    assert install.candidate_folders(tmp_path) == [tmp_path, *tmp_path.parents, tmp_path / "a", tmp_path / "b",
                                                   tmp_path / "c"]


def test_source_has_no_recursive_walk():
    """A recursive walk of /content would walk a mounted Google Drive."""
    text = SCRIPT.read_text()
    for call in ("rglob(", "glob(", "os.walk(", ".walk("):
        assert call not in text


def test_another_projects_pyproject_is_not_taken(tmp_path):
    for name in ("not-cocos", "cocos-lib-extra", "xcocos-lib"):
        _fake_repo(tmp_path / name, name=name)
    (tmp_path / "mention").mkdir()
    (tmp_path / "mention" / "pyproject.toml").write_text('[project]\nname = "other"\ndependencies = ["cocos-lib"]\n')
    assert install.find_copy(tmp_path) is None
    assert install.is_copy(_fake_repo(tmp_path / "real"))


# -- the source --------------------------------------------------------------------------------------------------

def test_a_copy_is_installed_whatever_the_repo(tmp_path):
    repo = _fake_repo(tmp_path / "cocos-main")
    assert install.choose_source(tmp_path, install.PLACEHOLDER) == str(repo)
    assert install.choose_source(tmp_path, "someone/fork") == str(repo)


def test_placeholder_and_no_copy_says_what_to_do(tmp_path):
    with pytest.raises(SystemExit) as e:
        install.choose_source(tmp_path, install.PLACEHOLDER)
    assert str(e.value) == "no copy of the repo found and REPO is a placeholder: upload and unzip the repo here"


def test_a_published_repo_without_a_copy_is_installed_from_github(tmp_path):
    assert install.choose_source(tmp_path, "someone/cocos-fork") == "git+https://github.com/someone/cocos-fork"
    assert install.choose_source(tmp_path, "someone/cocos-fork") == project.git_url("someone/cocos-fork")


# -- pip -----------------------------------------------------------------------------------------------------------

def test_install_runs_this_interpreters_pip_on_the_source_only(capsys):
    pip = Pip(stdout="pip says hello\n")
    install.install("/content/cocos-main", run=pip)
    [(cmd, kwargs)] = pip.calls
    assert cmd == [sys.executable, "-m", "pip", "install", "-q", "/content/cocos-main"]
    assert kwargs == {"capture_output": True, "text": True}
    assert capsys.readouterr().out == "pip says hello\n"       # relayed: a notebook shows no child's own output


def test_pip_never_upgrades_or_touches_torch():
    cmd = install.pip_command("git+https://github.com/a/b")
    assert not any(arg in ("-U", "--upgrade", "--force-reinstall") or "torch" in arg for arg in cmd)


def test_a_failing_pip_is_one_line_with_its_return_code(capsys):
    with pytest.raises(SystemExit) as e:
        install.install("/content/cocos-main", run=Pip(returncode=1, stderr="ERROR: No matching distribution\n"))
    assert str(e.value) == "pip install /content/cocos-main failed with return code 1 (its output is above)"
    assert capsys.readouterr().err == "ERROR: No matching distribution\n"


# -- the restart hint ----------------------------------------------------------------------------------------------

def test_only_imported_watched_packages_are_recorded():
    versions = {"transformers": "4.57.0", "peft": "0.17.0", "numpy": "2.0.0", "datasets": None}
    got = install.imported_versions(modules={"transformers", "numpy", "datasets", "os"}, version=versions.get)
    assert got == {"transformers": "4.57.0"}            # numpy not watched, peft not imported, datasets unreadable


def test_changed_versions_and_the_hint():
    now = {"transformers": "4.58.0", "ipywidgets": "7.7.1", "peft": None}.get
    changed = install.changed_versions({"transformers": "4.57.0", "ipywidgets": "7.7.1", "peft": "0.17.0"}, now)
    assert changed == ["transformers 4.57.0 -> 4.58.0", "peft 0.17.0 -> None"]
    assert install.restart_hint(changed) == ("transformers 4.57.0 -> 4.58.0, peft 0.17.0 -> None: use Runtime > "
                                             "Restart session, then run the notebook again")
    assert install.restart_hint([]) is None


def test_main_installs_the_copy_and_names_what_changed(monkeypatch, tmp_path, capsys):
    repo = _fake_repo(tmp_path / "cocos-main")
    versions = {"transformers": "4.57.0", "ipywidgets": "7.7.1", "peft": "0.17.0"}
    for name in install.WATCHED:
        monkeypatch.delitem(sys.modules, name, raising=False)
    for name in ("transformers", "ipywidgets"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setattr(metadata, "version", lambda dist: versions[dist])
    pip = Pip(on_call=lambda: versions.update(transformers="4.58.0", peft="0.18.0"))   # peft: not imported
    monkeypatch.chdir(tmp_path)
    assert install.main(["someone/fork"], run=pip) == 0
    assert [cmd for cmd, _ in pip.calls] == [install.pip_command(str(repo))]
    assert capsys.readouterr().out == (f"cocos_lib installed from {repo}\n"
                                       "transformers 4.57.0 -> 4.58.0: use Runtime > Restart session, then run the "
                                       "notebook again\n")


def test_main_stops_before_pip_without_a_source(tmp_path):
    pip = Pip()
    with pytest.raises(SystemExit, match="REPO is a placeholder"):
        install.main(["--start", str(tmp_path)], run=pip)
    assert pip.calls == []


# -- standard library only, runnable by path ------------------------------------------------------------------

def test_imports_only_the_standard_library():
    tree = ast.parse(SCRIPT.read_text())
    names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert names and all(node.level == 0 for node in ast.walk(tree) if isinstance(node, ast.ImportFrom))
    assert names - {"__future__"} <= set(sys.stdlib_module_names), names - set(sys.stdlib_module_names)


def test_runs_by_path_without_site_packages(tmp_path):
    """-I -S: no site-packages and not even the script's own folder on sys.path: only the stdlib is importable."""
    r = subprocess.run([sys.executable, "-I", "-S", str(SCRIPT), "--start", str(tmp_path)], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == "no copy of the repo found and REPO is a placeholder: upload and unzip the repo here\n"
    r = subprocess.run([sys.executable, "-I", "-S", "-c", f"import runpy; m = runpy.run_path({str(SCRIPT)!r}); "
                        "import sys; print(sorted(n for n in sys.modules if n.startswith('cocos_lib')))"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "[]\n", r.stderr
