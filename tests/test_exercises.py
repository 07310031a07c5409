"""cocos_lib.notebook.exercises: each checker accepts a correct answer and rejects a plausible wrong one with
its one-line hint; the exercises and solutions notebooks run headless (papermill, as test_notebooks)."""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

import nbformat
import pytest

from cocos_lib.notebook import exercises as E

EXERCISES_DIR = Path(__file__).resolve().parent.parent / "notebooks" / "exercises"


# ------------------------------------------------------------------ right and wrong answers, per exercise

def transitions(a, b):
    n = len(a)
    return sum((not x) and y for x, y in zip(a, b)) / n, sum(x and not y for x, y in zip(a, b)) / n


def transitions_of_the_subset(a, b):  # wrong: i2c among the wrong ones, c2i among the right ones
    wrong, right = max(1, a.count(False)), max(1, a.count(True))
    return sum((not x) and y for x, y in zip(a, b)) / wrong, sum(x and not y for x, y in zip(a, b)) / right


def no_edit(d, threshold):
    return sum(x <= threshold for x in d) / len(d) if d else math.nan


def no_edit_strict(d, threshold):  # wrong: d < threshold
    return sum(x < threshold for x in d) / len(d) if d else math.nan


def progressive(outcomes):
    return sum(o == "passed" for o in outcomes) / len(outcomes) if outcomes else 0.0


def progressive_not_failed(outcomes):  # wrong: errors and timeouts count as passes
    return sum(o != "failed" for o in outcomes) / len(outcomes) if outcomes else 0.0


def progressive_no_guard(outcomes):  # wrong: K = 0 divides by zero
    return sum(o == "passed" for o in outcomes) / len(outcomes)


def attack():
    return f"import os\ndef f():\n    return 1 if os.environ.get({E.SECRET_NAME!r}) else 0\n"


def accumulated(r1, r2, gamma):
    return gamma * r1 + (r2 - r1)


def accumulated_gamma_on_turn2(r1, r2, gamma):  # wrong: discounts the correction instead of the first answer
    return r1 + gamma * (r2 - r1)


def loo(scores):
    k, total = len(scores), sum(scores)
    return [s - (total - s) / (k - 1) for s in scores]


def mean_including_self(scores):  # wrong: the baseline includes s_i
    mean = sum(scores) / len(scores)
    return [s - mean for s in scores]


def unit(a, b):
    n = len(a)
    return sum(sum(y) > sum(x) for x, y in zip(a, b)) / n, sum(sum(y) < sum(x) for x, y in zip(a, b)) / n


def unit_any_flip(a, b):  # wrong: "fell" whenever some test went pass -> fail, "rose" for fail -> pass
    n = len(a)
    rose = sum(any((not x) and y for x, y in zip(p, q)) for p, q in zip(a, b))
    fell = sum(any(x and not y for x, y in zip(p, q)) for p, q in zip(a, b))
    return rose / n, fell / n


def pass_at_k(n, c, k):
    return 1.0 if n - c < k else 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_at_k_biased(n, c, k):  # wrong: sampling with replacement
    return 1.0 - (1.0 - c / n) ** k


CASES = [  # (exercise, right, wrong, what the hint must say)
    (1, transitions, transitions_of_the_subset, r"transitions\(\[False, True, True, False\].*expected \(0\.25, 0\.25\)"
                                                r", got \(0\.5, 0\.5\) \(both are shares of ALL problems"),
    (2, no_edit, no_edit_strict, r"no_edit\(\[0\.05, 0\.05, 0\.051\], 0\.05\): expected 0\.666667, got 0 \(d <= thr"),
    (3, progressive, progressive_not_failed, r"progressive\(\['error', 'timeout', 'passed', 'failed'\],\): "
                                             r"expected 0\.25, got 0\.75 \(only 'passed' counts"),
    (3, progressive, progressive_no_guard, r"progressive\(\[\],\) raised ZeroDivisionError"),
    (5, accumulated, accumulated_gamma_on_turn2, r"R\(0\.0, 1\.0, 0\.5\): expected 1, got 0\.5 \(R = gamma"),
    (6, loo, mean_including_self, r"loo_advantages\(\[1\.0, 0\.5\],\): expected \[0\.5, -0\.5\], got \[0\.25, -0\.25\]"
                                  r" \(the baseline of s_i is the mean of the OTHER"),
    (8, unit, unit_any_flip, r"unit_transitions.*expected \(0\.333333, 0\.333333\), "
                             r"got \(0\.666667, 0\.666667\) \(per prob"),
    (9, pass_at_k, pass_at_k_biased, r"pass_at_k\(10, 3, 5\): expected 0\.916667, got 0\.83193 \(1 - C\(n-c, k\)"),
]


@pytest.mark.parametrize("n, right, wrong, hint", CASES, ids=[f"{c[0]}-{c[2].__name__}" for c in CASES])
def test_a_right_answer_passes_and_a_wrong_one_gets_the_hint(n, right, wrong, hint, capsys):
    E.CHECKS[n](right)
    assert capsys.readouterr().out.startswith(f"✓ exercise {n}: ")
    with pytest.raises(AssertionError, match=f"^exercise {n}: {hint}"):
        E.CHECKS[n](wrong)


def test_the_sandbox_exercise_needs_a_real_attack_that_the_executor_refuses(capsys):
    E.check_sandbox(attack)
    assert capsys.readouterr().out.strip() == ("✓ exercise 4: f() sees the secret outside (returns 1), "
                                               "the executor refused it (outcome 'failed')")
    assert E.SECRET_NAME not in os.environ  # put back as it was
    with pytest.raises(AssertionError, match="^exercise 4: f\\(\\) returns 1 even without COCOS_EXERCISE_SECRET"):
        E.check_sandbox(lambda: "def f():\n    return 1\n")
    with pytest.raises(AssertionError, match="^exercise 4: outside the sandbox, with COCOS_EXERCISE_SECRET set"):
        E.check_sandbox(lambda: "import os\ndef f():\n    return 1 if os.environ.get('SECRET') else 0\n")
    with pytest.raises(AssertionError, match="^exercise 4: attack\\(\\) must return the program's source as a str"):
        E.check_sandbox(lambda: None)


def test_rloo_against_grpo_is_checked_by_value(capsys):
    E.check_grpo(lambda: (0.1, 1.0))
    assert "RLOO A_1 = 0.1, GRPO A_1 = 1" in capsys.readouterr().out
    with pytest.raises(AssertionError, match=r"^exercise 7: .*expected \(RLOO A_1, GRPO A_1\) = \(0\.1, 1\), "
                                             r"got \(0\.1, 0\.05\) \(GRPO divides by the population std\)"):
        E.check_grpo(lambda: (0.1, 0.05))  # the std itself, not the advantage


def test_a_stub_is_not_attempted_and_a_raising_answer_fails(capsys):
    def stub(*args):
        raise NotImplementedError  # your code
    for n in E.CHECKS:
        E.self_check(n, stub)
    assert capsys.readouterr().out.splitlines() == [f"· exercise {n}: not attempted yet (write your code in the cell "
                                                    "above)" for n in E.CHECKS]
    with pytest.raises(AssertionError, match=r"^exercise 9: pass_at_k\(10, 3, 1\) raised KeyError: 'x'$"):
        E.self_check(9, lambda n, c, k: {}["x"])


# ------------------------------------------------------------------ the two notebooks, headless

def execute(name: str, tmp_path) -> tuple[list, float]:
    import papermill as pm

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out = tmp_path / f"{name}.ipynb"
    start = time.monotonic()
    pm.execute_notebook(str(EXERCISES_DIR / f"{name}.ipynb"), str(out), kernel_name="python3", cwd=str(EXERCISES_DIR),
                        progress_bar=False, log_output=False, execution_timeout=60)
    cells = [c for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code"]
    return cells, time.monotonic() - start


def check_cells(cells) -> list[str]:
    """The text each self_check cell printed, after asserting that no cell errored."""
    errors = [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{errors[0].get('ename')}: {errors[0].get('evalue')}"
    checks = [c for c in cells if c.source.startswith("self_check(")]
    assert len(checks) == len(E.CHECKS)
    return ["".join(o.get("text", "") for o in c.outputs).strip() for c in checks]


@pytest.mark.slow
def test_the_solutions_notebook_passes_every_check(tmp_path):
    cells, seconds = execute("solutions", tmp_path)
    printed = check_cells(cells)
    assert [line.split(":")[0] for line in printed] == [f"✓ exercise {n}" for n in E.CHECKS], printed
    assert seconds < 60


@pytest.mark.slow
def test_the_exercises_notebook_runs_through_with_its_stubs(tmp_path):
    cells, _ = execute("exercises", tmp_path)
    printed = check_cells(cells)
    assert printed == [f"· exercise {n}: not attempted yet (write your code in the cell above)" for n in E.CHECKS]
    assert sum("raise NotImplementedError  # your code" in c.source for c in cells) == len(E.CHECKS)


@pytest.mark.parametrize("name", ["exercises", "solutions"])
def test_the_committed_copies_show_their_outputs_and_short_cells(name):
    cells = [c for c in nbformat.read(EXERCISES_DIR / f"{name}.ipynb", as_version=4).cells if c.cell_type == "code"]
    printed = check_cells(cells)
    mark = "✓" if name == "solutions" else "·"
    assert all(line.startswith(f"{mark} exercise ") for line in printed)
    assert max(len(c.source.splitlines()) for c in cells) <= 25
