"""runtime.py (hardware, precision, profile choice, memory fit) with fake CUDA devices and fake
memory plans; workspace.py (absolute paths, IF_MISSING); notebook.has_frontend on Colab."""
import sys
import types
from pathlib import Path
from types import SimpleNamespace as NS

import pytest

from cocos_lib import hardware
from cocos_lib.notebook import runtime
from cocos_lib.notebook import workspace
from cocos_lib.notebook.profile import ProfileError

ROOT = Path(__file__).resolve().parent.parent
GiB = 1024 ** 3
T4 = runtime.Hardware("cuda", "Tesla T4", (7, 5), 15835660288 / GiB)
A100 = runtime.Hardware("cuda", "NVIDIA A100-SXM4-40GB", (8, 0), 39.4)
H100 = runtime.Hardware("cuda", "NVIDIA H100 80GB HBM3", (9, 0), 79.1)
CPU = runtime.Hardware("cpu")
PEAKS = {"colab": ("Qwen/Qwen2.5-0.5B", 4.5), "paper": ("Qwen/Qwen2.5-1.5B", 24.4)}


def fake_plan(profile):
    return {"model": PEAKS[profile][0], "peak": PEAKS[profile][1]}


def fake_torch(props=None):
    cuda = NS(is_available=lambda: props is not None, get_device_properties=lambda i: props)
    return NS(cuda=cuda)


def test_detect_a_t4_and_the_cpu(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    props = NS(name="Tesla T4", major=7, minor=5, total_memory=15835660288)
    assert runtime.detect(fake_torch(props)) == T4
    assert runtime.detect(fake_torch()) == CPU
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert runtime.detect(fake_torch()).colab


def test_precision_follows_compute_capability():
    assert not T4.bf16 and A100.bf16 and not CPU.bf16
    assert runtime.precision(T4) == hardware.Precision("fp16", True, "sdpa")     # no bf16 before compute 8.0
    assert runtime.precision(A100) == hardware.Precision("bf16", False, "sdpa")
    assert runtime.precision(CPU).dtype == "fp32"
    assert runtime.precision(T4).describe() == "fp16 weights + loss scaling, sdpa attention"
    from cocos_lib.config import make_config
    colab = make_config("colab")            # what the colab profile trains with on a T4: fp16 weights, LoRA
    assert colab.dtype == runtime.precision(T4).dtype and colab.lora_r > 0


def test_auto_picks_colab_on_a_gpu_in_one_line_and_shows_memory():
    lines = []
    assert runtime.choose_profile(None, T4, lines.append, fake_plan) == "colab"
    assert lines == [
        "PROFILE=None -> 'colab': CUDA GPU Tesla T4 (compute 7.5, 14.7 GiB); fp16 weights + loss scaling, sdpa "
        "attention (set PROFILE to choose)",
        "memory: profile 'colab' (Qwen/Qwen2.5-0.5B) peaks at ~4.5 GiB of this GPU's 14.7 GiB (estimated from the "
        "model's shapes, cocos_lib/notebook/memory.py)"]


def test_auto_picks_tiny_on_a_cpu():
    lines = []
    assert runtime.choose_profile(None, CPU, lines.append, fake_plan) == "tiny"
    assert lines == ["PROFILE=None -> 'tiny': no CUDA GPU here, the CPU toy world (set PROFILE to choose)"]
    lines.clear()
    assert runtime.choose_profile(None, runtime.Hardware("cpu", colab=True), lines.append, fake_plan) == "tiny"
    assert lines == ["PROFILE=None -> 'tiny': no CUDA GPU in this runtime (for the 'colab' profile: Runtime > Change "
                     "runtime type > T4 GPU, then run again)"]


def test_explicit_choices_are_kept_and_warned_about():
    lines = []
    assert runtime.choose_profile("paper", T4, lines.append, fake_plan) == "paper"
    assert lines[0] == "PROFILE='paper': CUDA GPU Tesla T4 (compute 7.5, 14.7 GiB); fp16 weights + loss scaling, sdpa attention"
    assert lines[1] == ("warning: profile 'paper' (Qwen/Qwen2.5-1.5B) needs ~24.4 GiB at its peak (memory.plan "
                        "estimate), more than 95% of this GPU's 14.7 GiB: expect out-of-memory; pick a smaller "
                        "profile (PROFILE='colab') or a larger GPU")
    lines.clear()
    assert runtime.choose_profile("colab", CPU, lines.append, fake_plan) == "colab"
    assert lines == ["PROFILE='colab': no CUDA GPU (CPU only)",
                     "warning: profile 'colab' expects a CUDA GPU and there is none: it will run on the CPU, very slowly"]
    lines.clear()
    assert runtime.choose_profile("tiny", T4, lines.append, fake_plan) == "tiny"     # tiny has no GPU plan
    assert len(lines) == 1
    with pytest.raises(ProfileError, match="PROFILE='big': expected None \\(auto\\) or one of tiny, cpu, colab, paper"):
        runtime.choose_profile("big", T4, lines.append, fake_plan)


def test_memory_fit_from_the_real_plans():
    colab, paper = runtime.memory_fit("colab", T4), runtime.memory_fit("paper", T4)
    assert colab.fits and 6.0 < colab.peak_gib < 7.2 and colab.model == "Qwen/Qwen2.5-0.5B"   # independent: 5.0-7.2
    assert not paper.fits and paper.peak_gib > 20 and runtime.memory_fit("paper", H100).fits
    # fp32 master weights (optim.MasterWeightAdamW) put the paper plan at ~39.0 GiB: over 95% of a 40 GB A100
    assert 37 < runtime.memory_fit("paper", A100).peak_gib < 40 and not runtime.memory_fit("paper", A100).fits
    assert runtime.memory_fit("colab", CPU) is None and runtime.memory_fit("tiny", T4) is None
    assert runtime.Fit("colab", "m", 13.9, 14.7).fits is True and runtime.Fit("colab", "m", 14.0, 14.7).fits is False


def test_has_frontend_is_true_in_a_colab_kernel(monkeypatch):
    from cocos_lib.notebook.profile import has_frontend
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: NS(kernel=object())
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert has_frontend() is False                       # a kernel under pytest, no Colab: headless
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert has_frontend() is True


# ------------------------------------------------------------------ workspace

def _repo(folder: Path) -> Path:
    (folder / "notebooks").mkdir(parents=True)
    (folder / "pyproject.toml").write_text('[project]\nname = "cocos-lib"\n')
    return folder


def test_work_dir_is_the_repo_root_inside_a_checkout(tmp_path):
    repo = _repo(tmp_path / "cocos")
    assert workspace.repo_root(repo / "notebooks") == repo
    assert workspace.resolve_dirs(cwd=repo / "notebooks") == (repo, repo / "figures", repo / "runs")
    assert workspace.resolve_dirs(cwd=ROOT / "notebooks") == (ROOT, ROOT / "figures", ROOT / "runs")  # = ../figures


def test_work_dir_is_the_current_dir_elsewhere(tmp_path):
    content = tmp_path / "content"
    content.mkdir()
    _repo(content / "cocos-main")                      # an unzipped copy below does not move WORK_DIR
    assert workspace.repo_root(content) is None
    assert workspace.resolve_dirs(cwd=content) == (content, content / "figures", content / "runs")


def test_explicit_and_relative_dirs(tmp_path):
    cwd = tmp_path / "a" / "b"
    cwd.mkdir(parents=True)
    work, figures, runs = workspace.resolve_dirs("w", "../figs", tmp_path / "r", cwd=cwd)
    assert (work, figures, runs) == (cwd / "w", tmp_path / "a" / "figs", tmp_path / "r")
    assert workspace.resolve_dirs("~", cwd=cwd)[0] == Path.home().resolve()
    (tmp_path / "file").write_text("x")
    with pytest.raises(workspace.WorkspaceError, match="exists and is not a folder"):
        workspace.resolve_dirs(tmp_path / "file", cwd=cwd)


def test_on_missing_trains_after_saying_so_or_stops(tmp_path):
    lines = []
    workspace.on_missing("notebook 03's trained policy", tmp_path / "final", "03_training", "train", "~4 min", lines.append)
    assert lines == [f"notebook 03's trained policy is not in {tmp_path / 'final'}: run 03_training first with the "
                     "same RUN_DIR (on Colab a new runtime starts empty: a WORK_DIR on Google Drive keeps runs). "
                     "IF_MISSING='train': producing it here; ~4 min"]
    with pytest.raises(workspace.MissingResult, match="run 03_training first .* or set IF_MISSING='train'"):
        workspace.on_missing("notebook 03's trained policy", tmp_path, "03_training", "stop")
    with pytest.raises(workspace.WorkspaceError, match="IF_MISSING='skip': expected one of train, stop"):
        workspace.on_missing("x", tmp_path, "03", "skip")


def test_full_fine_tuning_refuses_auto_when_it_resolves_to_fp16():
    """config.validate: "auto" on a T4 is fp16 (runtime.precision), refused for full fine-tuning as the literal
    "fp16" is; bf16 GPUs, LoRA and the CPU pass."""
    from cocos_lib.config import ConfigError, make_config
    paper = make_config("paper", dtype="auto", device="cuda")     # built here on the CPU: "auto" is not fp16
    with pytest.raises(ConfigError) as e:
        paper.validate(T4)
    assert str(e.value) == ("config field 'dtype'='auto': resolves to fp16 on this GPU (compute < 8.0, no bf16), "
                            "and fp16 full fine-tuning has no fp32 master weights; use lora_r > 0 or dtype fp32")
    paper.validate(A100)
    paper.validate(H100)
    make_config("paper", dtype="auto", lora_r=16).validate(T4)
    make_config("paper", dtype="auto", device="cpu").validate(T4)  # the CPU never computes in fp16


def test_full_fine_tuning_with_auto_on_a_mocked_t4_fails_at_construction(monkeypatch):
    """No hardware passed: validate asks runtime.detect, i.e. torch.cuda (mocked as a T4 here)."""
    import torch
    from cocos_lib.config import ConfigError, make_config
    props = NS(name="Tesla T4", major=7, minor=5, total_memory=15835660288)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i=0: props)
    with pytest.raises(ConfigError, match="'dtype'='auto': resolves to fp16 on this GPU"):
        make_config("paper", dtype="auto")
    with pytest.raises(ConfigError, match="'dtype'='auto': resolves to fp16"):
        make_config("paper", dtype="auto", device="cuda:0")
    assert make_config("colab", dtype="auto").lora_r == 16         # LoRA on fp16 weights is the colab profile
