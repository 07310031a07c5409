"""cocos_lib.notebook.widgets: the pure views (numbers, diffs), the static fallback, and the widgets themselves."""
from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from cocos_lib import rewards
from cocos_lib.report import plots
from cocos_lib.notebook import widgets
from cocos_lib.evaluate import trajectory_rows
from cocos_lib.executor import TestReport
from cocos_lib.trajectory import Trajectory, Turn

SUB = "def add(a, b):\n    return a - b\n"
ADD = "def add(a, b):\n    return a + b\n"


def turn(code: str, outcomes: tuple[str, ...]) -> Turn:
    report = TestReport(outcomes)
    return Turn(prompt_ids=[1], completion_ids=[2, 3], text=code, code=code, report=report,
                reward=rewards.progressive_reward(report))


@pytest.fixture
def trajectories() -> list[Trajectory]:
    fixed = Trajectory(task=SimpleNamespace(task_id="toy/add"), sample=0,
                       turns=[turn(SUB, ("failed", "passed", "failed")), turn(ADD, ("passed",) * 3)])
    broken = Trajectory(task=SimpleNamespace(task_id="toy/sub"), sample=1,
                        turns=[turn(SUB, ("passed", "passed")), turn(SUB, ("passed", "passed")),
                               turn(ADD, ("error", "timeout"))])
    return [fixed, broken]


def test_the_view_shows_outcomes_rewards_the_diff_and_R(trajectories):
    text = widgets.trajectory_view(trajectories)  # the first trajectory
    assert text.splitlines()[0] == "toy/add · sample 0 · T = 2 turns"
    assert "── turn 1: r_1 = 0.333, 1/3 tests passed" in text
    assert "u1 ✗ failed  u2 ✓ passed  u3 ✗ failed" in text
    assert "── turn 2: r_2 = 1.000, 3/3 tests passed" in text
    diff = text.split("diff from turn 1:\n")[1].splitlines()
    assert [s.strip() for s in diff[:6]] == ["--- turn 1", "+++ turn 2", "@@ -1,2 +1,2 @@", "def add(a, b):",
                                             "-    return a - b", "+    return a + b"]
    assert text.splitlines()[-1] == "R = 0.833  (gamma = 0.5, r = (0.333, 1.000))"  # 0.5 * 1/3 + (1 - 1/3)
    assert widgets.trajectory_view(trajectories, gamma=0.0).splitlines()[-1].startswith("R = 0.667  (gamma = 0,")


def test_three_turns_no_change_and_R_against_the_library(trajectories):
    text = widgets.trajectory_view(trajectories, "toy/sub", 1, gamma=0.5)
    assert "diff from turn 1:\n   (no change)" in text and "u1 ! error  u2 ⏱ timeout" in text
    r = [1.0, 1.0, 0.0]
    assert rewards.accumulated_reward(r, 0.5) == pytest.approx(-0.75)  # 0.25 + 0.5 * 0 + (0 - 1)
    assert text.splitlines()[-1] == "R = -0.750  (gamma = 0.5, r = (1.000, 1.000, 0.000))"
    with pytest.raises(ValueError, match="no trajectory for task 'toy/sub', sample 0"):
        widgets.trajectory_view(trajectories, "toy/sub", 0)


def test_evaluate_rows_and_trajectories_give_the_same_view(trajectories):
    rows = [row for traj in trajectories for row in trajectory_rows(traj)]
    frame = pd.DataFrame(rows)
    for task_id, sample in (("toy/add", 0), ("toy/sub", 1)):
        expected = widgets.trajectory_view(trajectories, task_id, sample)
        assert widgets.trajectory_view(frame, task_id, sample) == expected
        assert widgets.trajectory_view(rows[::-1], task_id, sample) == expected  # turns are put in order


def test_reward_table_numbers():
    assert widgets.reward_table(0.5, 1, "binary") == [[0.0, 1.0], [-0.5, 0.5]]  # docs/paper.md's table
    assert widgets.reward_table(0.5, 1, "progressive") == plots.reward_grid(0.5, 1)
    for gamma in (0.0, 0.5, 1.0):
        got, grid = widgets.reward_table(gamma, 3, "progressive"), plots.reward_grid(gamma, 3)
        assert all(a == pytest.approx(b) for ra, rb in zip(got, grid) for a, b in zip(ra, rb))
    binary = widgets.reward_table(0.5, 3, "binary")
    assert [row[3] for row in binary] == [1.0, 1.0, 1.0, 0.5] and binary[3][:3] == [-0.5] * 3 and binary[1][2] == 0.0
    count = widgets.reward_table(0.5, 3, "count")
    assert count[0][3] == 3.0 and count[3][0] == -1.5 and count[2][2] == 1.0
    assert all(row == widgets.reward_table(1.0, 2)[0] for row in widgets.reward_table(1.0, 2))  # gamma = 1: R = r_2
    with pytest.raises(ValueError, match="unknown reward 'dense'"):
        widgets.reward_table(0.5, 3, "dense")
    with pytest.raises(ValueError, match="need K >= 1"):
        widgets.reward_table(0.5, 0)


def test_reward_table_text_and_html():
    lines = widgets.reward_table_text(1.0, 2, "progressive").splitlines()
    assert lines[1].split() == ["t1", "\\", "t2", "0", "1", "2"]
    assert lines[2].split() == ["0", "+0.000", "+0.500", "+1.000"]
    assert lines[4].split() == ["2", "+0.000", "+0.500", "+1.000"]  # 1 * 1 + (0 - 1): no "-0.000"
    page = widgets.reward_table_html(0.5, 1, "binary")
    assert page.count("<td") == 4 and ">-0.500</td>" in page and ">+1.000</td>" in page


def test_headless_the_builders_return_one_static_example(trajectories):
    assert not widgets.interactive_available()  # pytest: no frontend
    view = widgets.trajectory_browser(trajectories)
    assert isinstance(view, widgets.StaticView) and repr(view) == widgets.trajectory_view(trajectories)
    assert view._repr_html_().startswith("<pre") and "return a + b" in view._repr_html_()
    started = widgets.trajectory_browser(trajectories, "toy/sub", 1)
    assert repr(started) == widgets.trajectory_view(trajectories, "toy/sub", 1)
    table = widgets.reward_explorer(widgets=False)
    assert repr(table) == widgets.reward_table_text(0.5, 3, "progressive")
    assert table._repr_html_() == widgets.reward_table_html(0.5, 3, "progressive")


def test_the_widgets_build_and_redraw(trajectories):
    pytest.importorskip("ipywidgets")
    browser = widgets.trajectory_browser(trajectories, widgets=True)
    (pick, slider), out = browser.children[0].children, browser.children[1]
    assert "toy/add · sample 0" in out.value and "R = 0.833" in out.value
    pick.value = ("toy/sub", 1)
    assert "toy/sub · sample 1 · T = 3 turns" in out.value
    slider.value = 1.0
    assert "R = 0.000  (gamma = 1," in out.value  # gamma = 1: R = r_3
    started = widgets.trajectory_browser(trajectories, "toy/sub", 1, gamma=0.0, widgets=True)
    assert started.children[0].children[0].value == ("toy/sub", 1) and "R = -1.000" in started.children[1].value
    explorer = widgets.reward_explorer(widgets=True)
    (gamma, k, kind), table = explorer.children[0].children, explorer.children[1]
    assert table.value == widgets.reward_table_html(0.5, 3, "progressive")
    k.value, kind.value, gamma.value = 2, "binary", 0.0
    assert table.value == widgets.reward_table_html(0.0, 2, "binary") and table.value.count("<td") == 9


@pytest.mark.slow
def test_under_papermill_the_committed_output_is_the_static_view(tmp_path):
    import nbformat
    import papermill as pm

    cells = ["from cocos_lib.notebook.widgets import reward_explorer, trajectory_browser",
             "reward_explorer(gamma=0.5, n_tests=2)",
             "trajectory_browser([dict(task_id='t', turn=1, code='x = 1', outcomes=['failed'], reward=0.0),\n"
             "                    dict(task_id='t', turn=2, code='x = 2', outcomes=['passed'], reward=1.0)])"]
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), tmp_path / "in.ipynb")
    pm.execute_notebook(str(tmp_path / "in.ipynb"), str(tmp_path / "out.ipynb"), kernel_name="python3",
                        cwd=str(tmp_path), progress_bar=False, log_output=False, execution_timeout=60)
    outputs = [c.outputs for c in nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[1:]]
    data = [out[0]["data"] for out in outputs]
    assert all("application/vnd.jupyter.widget-view+json" not in d for d in data)
    assert data[0]["text/plain"] == widgets.reward_table_text(0.5, 2) and data[0]["text/html"].startswith("<table>")
    assert "-x = 1" in data[1]["text/plain"] and "+x = 2" in data[1]["text/plain"]
    assert data[1]["text/plain"].endswith("R = 1.000  (gamma = 0.5, r = (0.000, 1.000))")
