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


def verdicts():
    return dict(E.VERDICTS)


def verdicts_printing_wins():  # wrong: believes the printed "passed"
    return {**E.VERDICTS, "prints 'passed', returns 0": "passed"}


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


def rloo_vs_grpo():
    a, b = E.GRPO_SCORES
    mean, std = (a + b) / 2, abs(a - b) / math.sqrt(2)   # sample std, k - 1 = 1
    return a - b, (a - mean) / std


def rloo_vs_grpo_population_std():  # wrong: the population std (k divisor) gives ±1
    a, b = E.GRPO_SCORES
    return a - b, (a - (a + b) / 2) / (abs(a - b) / 2)


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


def ppo_clip(logp, old_logp, advantage, eps):
    rho = math.exp(logp - old_logp)
    return -min(rho * advantage, min(max(rho, 1 - eps), 1 + eps) * advantage)


def ppo_clip_always(logp, old_logp, advantage, eps):  # wrong: clips rho whatever the advantage's sign
    return -min(max(math.exp(logp - old_logp), 1 - eps), 1 + eps) * advantage


def kl(logp, ref):
    d = [a - b for a, b in zip(logp, ref)]
    return sum(d), sum(x * x / 2 for x in d), sum(math.exp(-x) - 1 + x for x in d)


def kl_k3_flipped(logp, ref):  # wrong: k3 with r = logp - ref
    d = [a - b for a, b in zip(logp, ref)]
    return sum(d), sum(x * x / 2 for x in d), sum(math.exp(x) - 1 - x for x in d)


def equal_share(returns, k):
    groups = [returns[i:i + k] for i in range(0, len(returns), k)]
    return sum(len(set(g)) == 1 for g in groups) / len(groups)


def equal_share_of_samples(returns, k):  # wrong: counts samples equal to their group's first, not groups
    return sum(r == returns[i - i % k] for i, r in enumerate(returns)) / len(returns)


def gamma_advantages(r1s, r2s, gamma):
    R = [gamma * a + (b - a) for a, b in zip(r1s, r2s)]
    return loo(R)


def gamma_advantages_of_r2(r1s, r2s, gamma):  # wrong: forgets r_1 altogether
    return loo(list(r2s))


def separated(a, b):
    return sum(a) / len(a) - sum(b) / len(b), min(a) > max(b) or max(a) < min(b)


def separated_by_std(a, b):  # wrong: "separated" when the difference exceeds one population std of a
    mean = sum(a) / len(a)
    std = math.sqrt(sum((x - mean) ** 2 for x in a) / len(a))
    diff = mean - sum(b) / len(b)
    return diff, abs(diff) > std


CASES = [  # (exercise, right, wrong, what the hint must say)
    (1, transitions, transitions_of_the_subset, r"transitions\(\[False, True, True, False\].*expected \(0\.25, 0\.25\)"
                                                r", got \(0\.5, 0\.5\) \(both are shares of ALL problems"),
    (2, no_edit, no_edit_strict, r"no_edit\(\[0\.05, 0\.05, 0\.051\], 0\.05\): expected 0\.666667, got 0 \(d <= thr"),
    (3, progressive, progressive_not_failed, r"progressive\(\['error', 'timeout', 'passed', 'failed'\],\): "
                                             r"expected 0\.25, got 0\.75 \(only 'passed' counts"),
    (4, verdicts, verdicts_printing_wins, r"1 of 7 predictions are wrong, e\.g\. \"prints 'passed', returns 0\": "
                                          r"you said 'passed'"),
    (6, accumulated, accumulated_gamma_on_turn2, r"R\(0\.0, 1\.0, 0\.5\): expected 1, got 0\.5 \(R = gamma"),
    (7, loo, mean_including_self, r"loo_advantages\(\[1\.0, 0\.5\],\): expected \[0\.5, -0\.5\], got \[0\.25, -0\.25\]"
                                  r" \(the baseline of s_i is the mean of the OTHER"),
    (8, rloo_vs_grpo, rloo_vs_grpo_population_std, r"for scores \(1\.0, 0\.9\): expected \(RLOO A_1, GRPO A_1\) = "
                                                   r"\(0\.1, 0\.707107\), got \(0\.1, 1\) \(GRPO divides by the sample"),
    (12, unit, unit_any_flip, r"unit_transitions.*expected \(0\.333333, 0\.333333\), "
                             r"got \(0\.666667, 0\.666667\) \(per prob"),
    (13, pass_at_k, pass_at_k_biased, r"pass_at_k\(10, 3, 5\): expected 0\.916667, got 0\.83193 \(1 - C\(n-c, k\)"),
    (9, ppo_clip, ppo_clip_always, r"ppo_clip\(0\.405465\d*, 0\.0, -1\.0, 0\.2\): expected 1\.5, got 1\.2 \(ρ = exp"),
    (10, kl, kl_k3_flipped, r"kl\(\[0\.0\], \[-0\.693147\d*\]\): expected \(0\.693147, 0\.240227, 0\.193147\), "
                            r"got \(0\.693147, 0\.240227, 0\.306853\)"),
    (11, equal_share, equal_share_of_samples, r"equal_share\(\[0\.5, 0\.5, 1\.0, 0\.0\], 2\): expected 0\.5, "
                                              r"got 0\.75 \(groups are k CONSECUTIVE"),
    (5, gamma_advantages, gamma_advantages_of_r2, r"advantages\(\[1\.0, 0\.0\], \[1\.0, 0\.0\], 0\.0\): expected "
                                                   r"\[0, 0\], got \[1, -1\] \(R_i = γ r_1"),
    (14, separated, separated_by_std, r"compare\(\(86\.0, 88\.5, 85\.5\), \(84\.0, 85\.0, 86\.0\)\): expected "
                                      r"\(1\.66667, False\), got \(1\.66667, True\) \(difference of the MEANS"),
]


def test_every_exercise_has_a_case():
    assert sorted(c[0] for c in CASES) == sorted(E.CHECKS)


@pytest.mark.parametrize("n, right, wrong, hint", CASES, ids=[f"{c[0]}-{c[2].__name__}" for c in CASES])
def test_a_right_answer_passes_and_a_wrong_one_gets_the_hint(n, right, wrong, hint, capsys):
    E.CHECKS[n](right)
    assert capsys.readouterr().out.startswith(f"✓ exercise {n}: ")
    with pytest.raises(AssertionError, match=f"^exercise {n}: {hint}"):
        E.CHECKS[n](wrong)


def stub_dots(*args):
    """A docstring, then nothing written yet."""
    ...


def stub_pass(*args):
    pass


def stub_raise(*args):
    raise NotImplementedError  # your code


def half_done(*args):  # started, then stopped: raises NotImplementedError when it gets there
    if args and args[0] == "never":
        return 0
    raise NotImplementedError("the second half")


def forgot_return(*args):
    _ = len(args)


@pytest.mark.parametrize("n", sorted(E.CHECKS))
@pytest.mark.parametrize("stub", [stub_dots, stub_pass, stub_raise, half_done, forgot_return],
                         ids=lambda f: f.__name__)
def test_an_unfinished_answer_is_not_a_wrong_one(n, stub, capsys):
    with pytest.raises(E.Unfinished):
        E.CHECKS[n](stub)
    E.self_check(n, stub)
    out = capsys.readouterr().out
    assert out.startswith(f"· exercise {n}: not finished yet (") and "write your code in the cell above" in out


def test_a_raising_answer_is_wrong_not_unfinished():
    with pytest.raises(AssertionError, match=r"^exercise 13: pass_at_k\(10, 3, 1\) raised KeyError: 'x'$"):
        E.self_check(13, lambda n, c, k: {}["x"])


def test_the_library_agrees_with_every_hand_computed_case(capsys):
    """The checkers never call the library; this test does, so the hand-written cases stay the library's truth."""
    import torch

    from cocos_lib import kl_estimators, metrics, rewards, rl
    from cocos_lib.evaluation import ablations
    from cocos_lib.executor import TestReport

    def t(x):
        return torch.tensor([list(x)], dtype=torch.float64)
    E.check_transitions(lambda a, b: (metrics.transition_metrics(a, b)["i2c"], metrics.transition_metrics(a, b)["c2i"]))
    E.check_no_edit(metrics.no_edit_rate)
    E.check_progressive(lambda o: rewards.progressive_reward(TestReport(tuple(o))))
    E.check_accumulated(lambda r1, r2, g: rewards.accumulated_reward([r1, r2], g))
    E.check_rloo(lambda s: rl.rloo_advantages(t(s))[0].tolist())
    E.check_grpo(lambda: (rl.rloo_advantages(t(E.GRPO_SCORES))[0, 0].item(),
                          rl.grpo_advantages(t(E.GRPO_SCORES), eps=0.0)[0, 0].item()))
    E.check_unit_transitions(lambda a, b: tuple(metrics.unit_count_transitions(a, b)[k] for k in ("rose", "fell")))
    E.check_pass_at_k(metrics.pass_at_k)
    E.check_ppo_clip(lambda lp, old, a, eps: rl.policy_loss(torch.tensor([[lp]], dtype=torch.float64),
                                                            torch.tensor([[old]], dtype=torch.float64),
                                                            torch.tensor([a], dtype=torch.float64),
                                                            torch.ones(1, 1), eps).item())
    E.check_kl(lambda lp, ref: (rl.sequence_kl(t(lp), t(ref), torch.ones(1, len(lp))).item(),
                                kl_estimators.k2(t(lp), t(ref), torch.ones(1, len(lp))).item(),
                                kl_estimators.k3(t(lp), t(ref), torch.ones(1, len(lp))).item()))
    E.check_equal_groups(lambda R, k: rl.equal_group_share(torch.tensor(R).view(-1, k)))
    E.check_gamma_cancels(lambda r1s, r2s, g: rl.rloo_advantages(
        t([rewards.accumulated_reward([a, b], g) for a, b in zip(r1s, r2s)]))[0].tolist())

    def compare(a, b):
        agg = ablations.aggregate({"cocos": [{"acc_t2": x} for x in a], "untrained": [{"acc_t2": x} for x in b]})
        row = ablations.compare(agg)["cocos - untrained"]["acc_t2"]
        return row["diff"], row["separated"]
    E.check_separated(compare)
    assert capsys.readouterr().out.count("✓ exercise") == len(E.CHECKS) - 1   # all but 4 (the executor, below)


def test_the_predicted_verdicts_are_the_executors():
    from cocos_lib.executor import Executor, Job

    with Executor(workers=2) as ex:
        reports = ex.run_many([Job(code, ["assert f() == 1"], timeout_s=1.0) for code in E.PROGRAMS.values()])
    assert {name: r.outcomes[0] for name, r in zip(E.PROGRAMS, reports)} == E.VERDICTS


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
    assert [line.split(" (")[0] for line in printed] == [f"· exercise {n}: not finished yet" for n in E.CHECKS]
    assert sum("raise NotImplementedError  # your code" in c.source for c in cells) == len(E.CHECKS)


@pytest.mark.parametrize("name", ["exercises", "solutions"])
def test_the_committed_copies_show_their_outputs_and_short_cells(name):
    cells = [c for c in nbformat.read(EXERCISES_DIR / f"{name}.ipynb", as_version=4).cells if c.cell_type == "code"]
    printed = check_cells(cells)
    mark = "✓" if name == "solutions" else "·"
    assert all(line.startswith(f"{mark} exercise ") for line in printed)
    assert max(len(c.source.splitlines()) for c in cells) <= 25
