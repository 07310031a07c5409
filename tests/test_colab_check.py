"""`make colab-check` (tools/colab_check.py): every notebook's Colab branch runs on this CPU with a fake
google.colab, installing the repo from an uploaded copy into a temporary target, outside the repo root."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _status() -> str:
    return subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=all"],
                          capture_output=True, text=True, check=True).stdout


@pytest.mark.slow
def test_colab_check_passes_and_leaves_nothing_behind():
    before = _status()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}   # the kernel must find only the installed copy
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "colab_check.py"), "--versions", "current"],
                       capture_output=True, text=True,
                       env=env, timeout=1500)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    runs = [line for line in r.stdout.splitlines() if re.match(r"\[\d+/\d+\] ", line)]
    names = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert len(runs) == len(names) + 1 and all(": ok (" in line for line in runs)
    assert [re.search(r"content/(\S+\.ipynb)", line).group(1) for line in runs[:-1]] == names
    assert "content/cocos-main/notebooks/check-00_setup_and_data.ipynb: ok" in runs[-1]   # inside the uploaded copy
    tmp = re.search(r"temporary folder (\S+) removed", r.stdout).group(1)
    assert not Path(tmp).exists() and _status() == before
