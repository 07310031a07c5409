"""session.setup: the one call that opens a numbered notebook (profile, folders, sizes, estimate)."""
from pathlib import Path

import pytest
import torch

from cocos_lib.hardware import Hardware
from cocos_lib.notebook.profile import ProfileError
from cocos_lib.notebook.session import setup


@pytest.fixture(autouse=True)
def keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_auto_profile_folders_sizes_and_the_estimate_on_a_cpu(tmp_path):
    lines = []
    P, name, work, figures, runs = setup("03", None, tmp_path / "w", None, "runs-here", hw=Hardware("cpu"),
                                         out=lines.append, train_updates=7)
    assert (name, P.name, P.train_updates) == ("tiny", "tiny", 7)
    assert work == (tmp_path / "w").resolve() and figures == work / "figures"
    assert runs == (Path.cwd() / "runs-here").resolve() and runs.is_absolute()
    assert lines[0].startswith("PROFILE=None -> 'tiny'")                # choose_profile's line
    assert lines[1].startswith("long cells ahead (~") and "training, 7 updates x 64 rollouts" in lines[2]
    assert "scaled" in lines[2]                                          # 7 of the 40 measured updates


def test_a_notebook_without_long_cells_prints_no_estimate_and_smoke_shrinks(tmp_path):
    lines = []
    P, name, *_ = setup("00", "tiny", tmp_path, smoke=True, hw=Hardware("cpu"), out=lines.append)
    assert name == "tiny" and P.smoke and P.n_eval == 6
    assert len(lines) == 1 and lines[0].startswith("PROFILE='tiny'")


def test_a_bad_profile_or_size_is_one_clear_error(tmp_path):
    with pytest.raises(ProfileError, match="PROFILE='huge'"):
        setup("01", "huge", tmp_path, hw=Hardware("cpu"), out=lambda s: None)
    with pytest.raises(ProfileError, match="unknown size 'n_tasks'"):
        setup("01", "tiny", tmp_path, hw=Hardware("cpu"), out=lambda s: None, n_tasks=3)
