"""estimates.py: the CPU numbers are the committed runs' measurements; the GPU model reproduces its
reference measurement and is computed by hand for a T4."""
import json
import math
from pathlib import Path
from statistics import NormalDist

import pytest

from cocos_lib.notebook import estimates as X
from cocos_lib.release import pipeline as release_run
from cocos_lib.notebook.memory import Shape
from cocos_lib.notebook.profile import notebook_profile

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def _cell_seconds(notebook: str, starts: str) -> float:
    cells = json.loads((NOTEBOOKS / notebook).read_text())["cells"]
    hits = [c for c in cells if c["cell_type"] == "code" and "".join(c["source"]).startswith(starts)]
    assert len(hits) == 1, f"{notebook}: {len(hits)} cells start with {starts!r}"
    return hits[0]["metadata"]["papermill"]["duration"]


def test_cpu_numbers_are_the_committed_runs():
    """Within a factor of 2 of what the committed tiny notebooks took (a re-run on a busier machine moves them)."""
    measured = {
        "eval_s_per_task_turn": _cell_seconds("01_reflection_failure.ipynb", "simple = E.evaluate") / (200 * 4),
        "self_refine_s_per_task": _cell_seconds("01_reflection_failure.ipynb", "refine = E.evaluate") / 200,
        "train_s_per_rollout": _cell_seconds("03_training.ipynb", "ckpt = last_checkpoint") / (40 * 16 * 4),
    }
    for key, value in measured.items():
        assert 0.5 <= X.MEASURED_CPU[key] / value <= 2, f"{key}: {X.MEASURED_CPU[key]} vs committed {value}"


def test_tiny_notebook_estimates_scale_the_measurements():
    """"measured" only for the very work of the measured cell; everything else says "scaled" and from what."""
    P = notebook_profile("tiny")
    (train,) = X.for_notebook("03_training", P)
    assert train.basis == "measured" and train.seconds == pytest.approx(249.6)          # 40 updates x 64 rollouts
    simple, refine = X.for_notebook("01", P)
    assert (simple.what, refine.what) == ("simple prompting, 200 tasks x 4 turns", "Self-Refine, 200 tasks x 2 turns")
    assert simple.seconds == pytest.approx(30.3) and refine.seconds == pytest.approx(24.5)
    assert simple.basis == refine.basis == "measured"
    assert X.for_notebook("00", P) == []
    (check,) = X.for_notebook("05", P)           # 3 gamma-check runs x 2 updates x 4 prompts x k 4
    assert check.seconds == pytest.approx(3 * 2 * 16 * 249.6 / 2560) and check.basis == "scaled"
    assert "from a measured 250 s for 2,560 training rollouts" in check.detail
    (rollouts,) = X.for_notebook("02", P)        # sampled rollouts, scaled from the greedy evaluation's rate
    assert rollouts.basis == "scaled" and "greedy task-turns" in rollouts.detail


def test_reference_measurement_is_reproduced():
    s = X.shape("Qwen/Qwen2.5-1.5B")
    assert X.step_s(s, X.GPUS["H100"], 128, 300 + 512 / 2) == pytest.approx(128 / 1600)   # 1,600 new tokens/s


def test_t4_step_by_hand():
    s = X.shape("Qwen/Qwen2.5-1.5B")
    assert (s.params, s.layers, s.kv_heads, s.head_dim) == (1543714304, 28, 2, 128)
    traffic_ref = 2 * 1543714304 + 2 * 28 * 2 * 128 * 2 * 128 * 556
    fixed = (0.08 - traffic_ref / 3350e9) / 28
    assert X.fixed_s_per_layer() == pytest.approx(fixed)
    traffic = 2 * 1543714304 + 2 * 28 * 2 * 128 * 2 * 8 * 400
    assert X.step_s(s, X.GPUS["T4"], 8, 400) == pytest.approx(28 * fixed + traffic / 320e9)
    assert 0.085 < X.step_s(s, X.GPUS["T4"], 8, 400) < 0.09     # not 10 x the H100's 80 ms


def test_batch_steps():
    assert X.batch_steps(8, 512, stop=False) == 512
    assert X.batch_steps(1, 512, stop=True) == 70                 # the median of one completion
    assert X.batch_steps(32, 512, stop=True) == round(70 * math.exp(0.5 * NormalDist().inv_cdf(32 / 33))) == 179
    assert X.batch_steps(32, 100, stop=True) == 100


def test_released_evaluation_estimate_counts_steps():
    plan = release_run.plan("paper", pairs=("Qwen2.5-1.5B",))          # 4 turns, batch 8, EOS only
    ests = X.released(plan, X.GPUS["T4"])
    assert [e.what for e in ests] == [
        "Qwen/Qwen2.5-1.5B on mbpp-test, 500 tasks x 4 turns", "Jay-Cho/CoCoS-Qwen2.5-1.5B on mbpp-test, 500 tasks x 4 turns",
        "Qwen/Qwen2.5-1.5B on humaneval, 164 tasks x 4 turns", "Jay-Cho/CoCoS-Qwen2.5-1.5B on humaneval, 164 tasks x 4 turns"]
    assert all(e.basis == "estimated" for e in ests)
    assert "129,024 decode steps" in ests[0].detail            # 63 batches x 512 steps x 4 turns
    assert "43,008 decode steps" in ests[2].detail             # 21 batches x 512 x 4
    assert 2.5 * 3600 < ests[1].seconds < 4 * 3600
    fast = X.released(release_run.plan("colab"), X.GPUS["T4"])   # batch 32, stop at [DONE], 2 turns
    assert sum(e.seconds for e in fast) < sum(e.seconds for e in ests) / 5


def test_gpu_estimates_are_labelled_and_use_the_named_card():
    P = notebook_profile("colab")
    ests = X.for_notebook("01", P, "Tesla T4")
    assert [e.basis for e in ests] == ["estimated", "estimated"] and ests[0].detail.startswith("T4: ")
    assert X.for_notebook("01", P, "NVIDIA H100 80GB HBM3")[0].seconds < ests[0].seconds
    (train,) = X.for_notebook("03", P, "Tesla T4")
    assert train.what == "training, 200 updates x 32 rollouts" and "s an update" in train.detail
    assert X.gpu_for("NVIDIA A100-SXM4-40GB").name == "A100" and X.gpu_for(None).name == "T4"
    assert X.shape("Qwen/Qwen2.5-Coder-0.5B-Instruct") is None      # unknown shapes: no estimate, not a guess
    assert isinstance(X.shape("Jay-Cho/CoCoS-Llama-3.2-1B"), Shape)


def test_duration_and_show():
    assert [X.duration(s) for s in (0.2, 59, 150, 3 * 3600)] == ["1 s", "59 s", "2 min", "3.0 h"]
    lines = []
    X.show([X.Estimate("a", 30, "measured", "x"), X.Estimate("b", 90, "estimated", "y")], "ahead", lines.append)
    assert lines == ["ahead (~2 min in all):", "  a: ~30 s (measured; x)", "  b: ~2 min (estimated; y)"]
    lines.clear()
    X.show([], "ahead", lines.append)
    assert lines == ["ahead: no estimate for this profile"]
