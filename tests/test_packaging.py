"""What `pip install .` ships (the Colab install cell installs non-editable): every module and asset of the tree.

setuptools finds the packages (pyproject.toml); a subpackage it missed would import here (editable install, the
source tree) and vanish from users' installs, so the test builds the wheel and compares its file list."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "cocos_lib"


@pytest.mark.slow
def test_the_wheel_holds_every_module_and_asset(tmp_path):
    src = tmp_path / "src"  # a copy: the build's build/ and *.egg-info stay out of the checkout
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(LIB, src / "cocos_lib", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                            "--no-index", "-q", "-w", str(tmp_path)], capture_output=True, text=True, timeout=600,
                           cwd=tmp_path)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(tmp_path.glob("cocos_lib-*.whl"))
    shipped = set(zipfile.ZipFile(wheel).namelist())
    wanted = {str(p.relative_to(src)) for p in (src / "cocos_lib").rglob("*") if p.is_file()}
    assert sorted(wanted - shipped) == []
