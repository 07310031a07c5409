"""Two notebook widgets over pure, tested text views; without a live frontend they render statically.

    trajectory_browser(data)  pick a trajectory (task, sample): each turn's code, the unified diff from the
                              turn before, the per-test outcomes, r_t per turn and R = rewards.accumulated_reward
    reward_explorer()         gamma, K (tests per task) and the reward type: the table of the two-turn R over
                              (tests passed at turn 1, tests passed at turn 2)

`data`: evaluate.evaluate's DataFrame (task_id, sample, turn, code, outcomes, reward, ...), a list of such row
dicts, or a list of rollout.Trajectory. Pure cores: trajectory_view (str), reward_table (floats; _text / _html).
Interactive when ipywidgets imports and the kernel has a frontend (interactive_available; notebook.has_frontend
says no under papermill, nbconvert and pytest) or with widgets=True. Otherwise (or widgets=False) a builder
returns a StaticView of one example (the first or given trajectory; the given gamma, K, reward): HTML with a
plain-text twin, so that a notebook executed headless keeps real output. Needs no torch and no pandas.
"""
from __future__ import annotations

import difflib
import html
import importlib.util

from cocos_lib import rewards
from cocos_lib.executor import TestReport
from cocos_lib.notebook.profile import has_frontend

REWARD_TYPES = tuple(rewards.REWARDS)  # binary, progressive, count
MARKS = {"passed": "✓", "failed": "✗", "error": "!", "timeout": "⏱"}


class StaticView:
    """What a builder returns without widgets: `text` (text/plain) and the same as <pre> or a table (text/html)."""

    def __init__(self, text: str, html_text: str | None = None):
        self.text = text
        self.html = html_text if html_text is not None else _pre(text)

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return self.text


def interactive_available() -> bool:
    """True when ipywidgets imports and the kernel has a live frontend (False headless and in plain Python)."""
    return importlib.util.find_spec("ipywidgets") is not None and has_frontend()


def _signed(v: float) -> str:
    """+0.500 / -0.167; float noise around zero (gamma * r - r) prints as +0.000."""
    return f"{0.0 if abs(v) < 1e-12 else v:+.3f}"


def _pre(text: str) -> str:
    return f"<pre style='font-size: 12px'>{html.escape(text)}</pre>"


def _use_widgets(widgets: bool | None) -> bool:
    return interactive_available() if widgets is None else widgets


# ------------------------------------------------------------------ trajectories

def trajectory_records(data) -> dict[tuple[str, int], list[dict]]:
    """(task_id, sample) -> its turns in order, each {turn, code, outcomes, reward}, from any accepted input."""
    if isinstance(data, dict):
        return data
    if hasattr(data, "to_dict"):  # a DataFrame of evaluate rows
        data = data.to_dict(orient="records")
    out: dict[tuple[str, int], list[dict]] = {}
    for item in data:
        if hasattr(item, "turns"):  # a rollout.Trajectory
            key = (item.task.task_id, int(item.sample))
            for t, turn in enumerate(item.turns, start=1):
                out.setdefault(key, []).append({"turn": t, "code": turn.code, "outcomes": list(turn.report.outcomes),
                                                "reward": float(turn.reward)})
        else:
            out.setdefault((item["task_id"], int(item.get("sample", 0))), []).append(
                {"turn": int(item["turn"]), "code": item["code"], "outcomes": list(item["outcomes"]),
                 "reward": float(item["reward"])})
    return {key: sorted(turns, key=lambda row: row["turn"]) for key, turns in out.items()}


def turn_diff(before: str, after: str, t: int) -> str:
    """Unified diff of turn t-1's code against turn t's, or "(no change)"."""
    lines = difflib.unified_diff(before.splitlines(), after.splitlines(), f"turn {t - 1}", f"turn {t}", lineterm="")
    return "\n".join(lines) or "(no change)"


def trajectory_view(data, task_id: str | None = None, sample: int = 0, gamma: float = 0.5) -> str:
    """The text of one trajectory (the first one when task_id is None): turns, diffs, outcomes, r_t and R."""
    records = trajectory_records(data)
    if not records:
        raise ValueError("trajectory_view: no trajectories given")
    key = next(iter(records)) if task_id is None else (task_id, sample)
    if key not in records:
        raise ValueError(f"trajectory_view: no trajectory for task {key[0]!r}, sample {key[1]}")
    turns = records[key]
    lines = [f"{key[0]} · sample {key[1]} · T = {len(turns)} turns"]
    for i, row in enumerate(turns):
        t, outcomes = row["turn"], row["outcomes"]
        tests = "  ".join(f"u{k} {MARKS.get(o, '?')} {o}" for k, o in enumerate(outcomes, start=1)) or "(no tests)"
        passed = sum(o == "passed" for o in outcomes)
        lines += ["", f"── turn {t}: r_{t} = {row['reward']:.3f}, {passed}/{len(outcomes)} tests passed"]
        lines += [f"   {tests}"]
        lines += ["   code:"] + [f"   | {s}" for s in row["code"].splitlines()]
        if i:
            diff = turn_diff(turns[i - 1]["code"], row["code"], t)
            lines += [f"   diff from turn {turns[i - 1]['turn']}:"] + [f"   {s}" for s in diff.splitlines()]
    r = [row["reward"] for row in turns]
    big_r = rewards.accumulated_reward(r, gamma)
    big_r = 0.0 if abs(big_r) < 1e-12 else big_r  # no "-0.000"
    lines += ["", f"R = {big_r:.3f}  (gamma = {gamma:g}, r = ({', '.join(f'{x:.3f}' for x in r)}))"]
    return "\n".join(lines)


def trajectory_browser(data, task_id: str | None = None, sample: int = 0, gamma: float = 0.5,
                       widgets: bool | None = None):
    """A dropdown over the trajectories and a gamma slider above trajectory_view, starting at (task_id, sample)
    (None: the first trajectory); without widgets a StaticView of that one trajectory."""
    records = trajectory_records(data)
    text = trajectory_view(records, task_id, sample, gamma)  # checks the start
    if not _use_widgets(widgets):
        return StaticView(text)
    import ipywidgets as W  # lazy: optional dependency (used only with a live frontend, see _use_widgets)

    options = [(f"{tid} · sample {s}", (tid, s)) for tid, s in records]
    start = next(iter(records)) if task_id is None else (task_id, sample)
    pick = W.Dropdown(options=options, value=start, description="trajectory")
    slider = W.FloatSlider(value=gamma, min=0.0, max=1.0, step=0.05, description="γ")
    out = W.HTML()

    def redraw(_change=None):
        out.value = _pre(trajectory_view(records, *pick.value, gamma=slider.value))

    pick.observe(redraw, "value")
    slider.observe(redraw, "value")
    redraw()
    return W.VBox([W.HBox([pick, slider]), out])


# ------------------------------------------------------------------ the reward table

def reward_table(gamma: float, n_tests: int, reward: str = "progressive") -> list[list[float]]:
    """grid[i][j] = R of a two-turn trajectory with i of K tests passed at turn 1 and j at turn 2."""
    if reward not in rewards.REWARDS:
        raise ValueError(f"reward_table: unknown reward {reward!r} (expected one of {', '.join(REWARD_TYPES)})")
    if n_tests < 1:
        raise ValueError(f"reward_table: need K >= 1 tests, got {n_tests}")
    r = [rewards.REWARDS[reward](TestReport(("passed",) * i + ("failed",) * (n_tests - i))) for i in range(n_tests + 1)]
    return [[rewards.accumulated_reward([r1, r2], gamma) for r2 in r] for r1 in r]


def reward_table_text(gamma: float, n_tests: int, reward: str = "progressive") -> str:
    """reward_table as aligned text: a row per tests passed at turn 1, a column per tests passed at turn 2."""
    grid = reward_table(gamma, n_tests, reward)
    head = f"{reward} reward, K = {n_tests}, gamma = {gamma:g}: R by tests passed at turn 1 (rows) / turn 2 (columns)"
    lines = [head, "t1 \\ t2 " + "".join(f"{j:>8d}" for j in range(n_tests + 1))]
    lines += [f"{i:>7d} " + "".join(f"{_signed(v):>8}" for v in row) for i, row in enumerate(grid)]
    return "\n".join(lines)


def _color(v: float, scale: float) -> str:
    """Red (negative) to white to green (positive)."""
    x = max(-1.0, min(1.0, v / scale)) if scale else 0.0
    red, green = (255, int(255 * (1 + x))) if x < 0 else (int(255 * (1 - x)), 255)
    return f"rgb({red}, {green}, {min(red, green)})"


def reward_table_html(gamma: float, n_tests: int, reward: str = "progressive") -> str:
    """reward_table as a coloured HTML table (the same numbers as reward_table_text)."""
    grid = reward_table(gamma, n_tests, reward)
    scale = max(abs(v) for row in grid for v in row)
    cells = "".join(f"<th>{j}</th>" for j in range(n_tests + 1))
    rows = [f"<tr><th>t1 \\ t2</th>{cells}</tr>"]
    for i, row in enumerate(grid):
        tds = "".join(f"<td style='background: {_color(v, scale)}; color: black'>{_signed(v)}</td>" for v in row)
        rows.append(f"<tr><th>{i}</th>{tds}</tr>")
    caption = f"{reward} reward, K = {n_tests}, γ = {gamma:g}: R by tests passed at turn 1 (rows) / turn 2 (columns)"
    return f"<table><caption>{html.escape(caption)}</caption>{''.join(rows)}</table>"


def reward_explorer(gamma: float = 0.5, n_tests: int = 3, reward: str = "progressive", widgets: bool | None = None):
    """Sliders for gamma and K and a reward dropdown above the table; else a StaticView of the given setting."""
    if not _use_widgets(widgets):
        return StaticView(reward_table_text(gamma, n_tests, reward), reward_table_html(gamma, n_tests, reward))
    import ipywidgets as W  # lazy: optional dependency (as above)

    g = W.FloatSlider(value=gamma, min=0.0, max=1.0, step=0.05, description="γ")
    k = W.IntSlider(value=n_tests, min=1, max=8, description="K tests")
    kind = W.Dropdown(options=list(REWARD_TYPES), value=reward, description="reward")
    out = W.HTML()

    def redraw(_change=None):
        out.value = reward_table_html(g.value, k.value, kind.value)

    for control in (g, k, kind):
        control.observe(redraw, "value")
    redraw()
    return W.VBox([W.HBox([g, k, kind]), out])
