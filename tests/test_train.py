"""Training loop: configs and their errors, data order, lr schedule, metrics, checkpoints, resume, CLI."""
import hashlib
import json
import math
import subprocess
import sys

import pytest
import torch

from cocos_lib.config import PROFILES, ConfigError, coerce, make_config
from cocos_lib.executor import TestReport
from cocos_lib.train import find_checkpoint, lr_factor, main, task_indices, train

TIMING = ("sec_", "elapsed", "tokens_per_s")


# ------------------------------------------------------------------ a deterministic fake executor

class HashExecutor:
    """Test u_k 'passes' iff a hash of (code, k) is even: rewards vary, so advantages are non-zero."""
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

    def run_many(self, jobs, progress=False):
        return [TestReport(tuple("passed" if hashlib.sha256(f"{j.code}|{i}".encode()).digest()[0] % 2 == 0
                                 else "failed" for i in range(len(j.tests)))) for j in jobs]


@pytest.fixture
def fake_world():
    """The hash executor, passed to train(executor=...): real rollouts, real rewards, test outcomes that vary
    with the code (the random tiny policy never writes passing code, so the real executor would give A = 0)."""
    return HashExecutor()


def small_config(model, **kw):
    base = dict(model=model, updates=3, prompts_per_update=2, k=2, max_new_tokens=6, micro_batch=4, lr=1e-3,
                kl_coef=0.05, exec_workers=1, checkpoint_every=0, seed=3, gen_batch_size=8)
    return make_config("tiny", **{**base, **kw})


def strip_timing(m):
    return {k: v for k, v in m.items() if not k.startswith(TIMING)}


def read_jsonl(path):
    return [json.loads(line) for line in open(path)]


# ----------------------------------------------------------------------------- configs

def test_paper_profile_matches_paper_md():
    c = make_config("paper")
    assert (c.model, c.k, c.prompts_per_update * c.k, c.updates) == ("Qwen/Qwen2.5-1.5B", 2, 128, 1500)
    assert (c.lr, c.schedule, c.warmup, c.weight_decay) == (1e-5, "cosine", 0, 0.0)
    assert (c.kl_coef, c.kl, c.cliprange, c.temperature, c.top_p) == (0.01, "sequence", 0.2, 0.9, 1.0)
    assert (c.max_new_tokens, c.dtype, c.seed, c.reward, c.gamma) == (512, "bf16", 42, "progressive", 0.5)
    assert c.share_first_turn is True and c.train_turns == (2,) and c.turns == 2
    # #21: the released pipeline: Boost first, then RL with [CORRECT] prompts, no few-shot, the release's
    # extraction, no gradient clipping
    assert (c.boost_steps, c.boost_batch, c.boost_lr) == (100, 256, 2e-5)
    assert (c.fewshot, c.ending, c.extraction, c.max_grad_norm) == (0, "correct", "release", None)
    assert make_config("colab").model == "Qwen/Qwen2.5-0.5B" and make_config("colab").dtype == "fp16"
    assert make_config("tiny").model == "tiny-warmstart" and make_config("tiny").tasks == "toy-train"
    assert set(PROFILES) == {"tiny", "cpu", "colab", "paper", "released"}


def test_released_profile_is_paper_with_the_release_choices():
    """#15: the 'released' preset = paper + count reward, no clipping, no stop (512 tokens, pad mask),
    the release's pad token, top_k 50 with top-k pi_old; every other field as the paper profile."""
    r, p = make_config("released"), make_config("paper")
    changed = {k: v for k, v in r.to_dict().items() if p.to_dict()[k] != v}
    assert changed == dict(reward="count", stop_at_done=False, ignore_eos=True, pad_token="released", top_k=50)
    assert r.max_grad_norm is None and r.boost_steps == 100 and r.extraction == "release"
    rl = r.rl_config()
    assert rl.max_grad_norm is None and rl.ignore_eos and rl.top_k == 50
    from cocos_lib.train import rollout_config
    s = rollout_config(make_config("released", fewshot=0)).sampling  # fewshot 3 would load MBPP
    assert (s.stop, s.ignore_eos, s.top_k, s.max_new_tokens, s.temperature) == (None, True, 50, 512, 0.9)
    with pytest.raises(ConfigError, match="top-k sampling needs backend 'hf'"):
        make_config("released", backend="static")


def test_make_config_coerces_set_strings():
    c = make_config("tiny", k="3", gamma="0.25", train_turns="1,2", share_first_turn="false",
                    cliprange="none", device="none", n_tasks="10")
    assert (c.k, c.gamma, c.train_turns, c.share_first_turn, c.cliprange, c.device, c.n_tasks) == \
        (3, 0.25, (1, 2), False, None, None, 10)
    assert coerce("train_turns", "[2]") == (2,) and coerce("stop_at_done", "yes") is True


@pytest.mark.parametrize("kw, message", [
    (dict(k=1), "config field 'k'=1: RLOO needs k >= 2"),
    (dict(reward="exact"), "config field 'reward'='exact': unknown, expected one of binary, progressive, count"),
    (dict(kl="full"), "config field 'kl'='full': unknown"),
    (dict(backend="tgi"), "config field 'backend'='tgi': unknown"),
    (dict(tasks="mbpp-dev"), "config field 'tasks'='mbpp-dev': unknown"),
    (dict(train_turns=(3,)), "config field 'train_turns'=(3,): each turn must be in 1..turns=2"),
    (dict(train_turns=(0, 2)), "each turn must be in 1..turns=2"),
    (dict(share_first_turn=True, train_turns=(1, 2)), "turn 1 is shared by the group, so its RLOO gradient is zero"),
    (dict(turns=1, train_turns=(1,)), "config field 'share_first_turn'=True: needs turns >= 2"),
    (dict(gamma=1.5), "config field 'gamma'=1.5: must be in [0, 1]"),
    (dict(lr=0), "config field 'lr'=0: must be > 0"),
    (dict(dtype="fp16", lora_r=0), "fp16 full fine-tuning has no fp32 master weights"),
    (dict(cliprange=-1.0), "config field 'cliprange'=-1.0: must be > 0 or None"),
    (dict(k="two"), "config field 'k': cannot parse 'two' as int"),
    (dict(share_first_turn="maybe"), "config field 'share_first_turn': cannot parse 'maybe' as bool"),
    (dict(nonsense=1), "unknown config field 'nonsense'"),
])
def test_bad_config_fails_in_one_line(kw, message):
    with pytest.raises(ConfigError) as e:
        make_config("tiny", **kw)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_unknown_profile_and_missing_model(tmp_path):
    with pytest.raises(ConfigError, match="unknown profile 'huge': expected one of colab, cpu, paper, released, tiny"):
        make_config("huge")
    cfg = make_config("tiny", model=str(tmp_path / "no-such-model"))
    with pytest.raises(ConfigError, match="config field 'model': model '.*no-such-model': no such local directory"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # failed before any work


def test_rollout_fewshot_is_mbpp_prompt_split_for_mbpp_and_default_otherwise(monkeypatch):
    """docs/paper.md §8: a base model's few-shot block is MBPP prompt-split tasks (ids 2, 3, 4 for 3-shot)."""
    from cocos_lib import prompts, tasks
    from cocos_lib.train import rollout_config
    calls = []
    split = [tasks.Task(f"MBPP/{i}", f"Write f{i}.", (f"assert f{i}() == {i}",), reference=f"def f{i}(): return {i}")
             for i in range(1, 11)]  # the 10 prompt-split tasks, task_ids 1..10

    def fake_load_mbpp(split_name="test", variant="full", path=None, challenge=False):
        calls.append((split_name, path))
        return split if split_name == "prompt" else pytest.fail(f"asked for split {split_name!r}")
    monkeypatch.setattr(prompts, "load_mbpp", fake_load_mbpp)  # no network (the name mbpp_fewshot_block reads)
    block = rollout_config(make_config("paper", fewshot=3, ending="begin")).fewshot  # tasks=mbpp-train
    assert calls == [("prompt", None)]
    assert block == "".join(f"{prompts.task_header(t)}{t.reference}\n[DONE]\n\n" for t in split[1:4])
    assert block.count("[BEGIN]") == 3 and "Write f2." in block and "Write f1." not in block
    toy = rollout_config(make_config("tiny", fewshot=2)).fewshot
    assert calls == [("prompt", None)] and toy == prompts.fewshot_block(n=2) and toy.count("[DONE]") == 2
    assert rollout_config(make_config("tiny")).fewshot == "" and make_config("tiny").fewshot == 0


# ----------------------------------------------------------------------------- data order, lr

def test_task_indices_are_epoch_shuffled_and_resumable():
    n = 7
    stream = task_indices(n, seed=1, start=0, count=3 * n)
    for e in range(3):
        assert sorted(stream[e * n:(e + 1) * n]) == list(range(n))
    assert stream[:n] != stream[n:2 * n]  # reshuffled per epoch
    assert task_indices(n, 1, 5, 10) == stream[5:15]  # resuming at a data position continues the stream
    assert task_indices(n, 2, 0, n) != stream[:n]


def test_lr_schedule_cosine_no_warmup_and_warmup():
    f = lr_factor(make_config("paper", updates=100))
    assert f(0) == 1.0 and f(50) == pytest.approx(0.5) and f(100) == pytest.approx(0.0, abs=1e-12)
    assert f(25) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    g = lr_factor(make_config("paper", updates=10, warmup=4, schedule="linear"))
    assert [g(u) for u in range(4)] == [0.2, 0.4, 0.6, 0.8] and g(4) == 1.0 and g(7) == pytest.approx(0.5)


# ----------------------------------------------------------------------------- the loop

def test_train_writes_metrics_checkpoint_and_final(tiny_policy_dir, fake_world, tmp_path):
    seen = []
    cfg = small_config(tiny_policy_dir, checkpoint_every=2)
    hist = train(cfg, tmp_path, executor=fake_world, callback=seen.append, progress=False)
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["update"] for r in rows] == [1, 2, 3] and [r["update"] for r in seen] == [1, 2, 3] and hist == rows
    keys = {"update", "reward_t1", "reward_t2", "acc_t1", "acc_t2", "accumulated", "kl", "loss", "equal_groups",
            "tokens", "sec_generate", "sec_execute", "sec_backward", "lr", "grad_norm", "edit_t2", "i2c_t2", "c2i_t2"}
    assert keys <= set(rows[0])
    assert all(0 <= rows[0][k] <= 1 for k in ("edit_t2", "i2c_t2", "c2i_t2"))
    assert rows[0]["kl"] == 0.0 and rows[1]["kl"] != 0.0  # pi_theta = pi_ref before the first update
    assert rows[0]["lr"] == pytest.approx(1e-3) and rows[1]["lr"] == pytest.approx(1e-3 * 0.75)  # cosine over 3
    assert 0 < rows[0]["tokens"] <= (2 + 4) * 6  # turn 1 once per prompt (shared) + k turn-2 samples
    state = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert state["update"] == 3 and state["data_pos"] == 6 and state["config"]["k"] == 2
    assert (tmp_path / "final" / "config.json").is_file() and (tmp_path / "checkpoint" / "state.pt").is_file()
    assert not (tmp_path / "checkpoint.tmp").exists() and not (tmp_path / "checkpoint.old").exists()
    again = train(small_config(tiny_policy_dir, updates=1, checkpoint_every=0), tmp_path, executor=fake_world,
                  progress=False)
    assert [r["update"] for r in again] == [1] and not (tmp_path / "checkpoint").exists()  # a fresh run replaces


def interrupt_after(update: int):
    """A train() callback that does what Ctrl-C does between updates, after `update`."""
    def callback(m):
        if m["update"] == update:
            raise KeyboardInterrupt
    return callback


def test_interrupt_after_update_2_and_resume_equals_uninterrupted_run(tiny_policy_dir, fake_world, tmp_path):
    cfg = small_config(tiny_policy_dir)
    full = train(cfg, tmp_path / "a", executor=fake_world, progress=False)

    with pytest.raises(KeyboardInterrupt, match="interrupted after update 2"):
        train(cfg, tmp_path / "b", executor=fake_world, callback=interrupt_after(2), progress=False)
    assert json.loads((tmp_path / "b" / "checkpoint" / "state.json").read_text())["update"] == 2
    assert not (tmp_path / "b" / "final").exists()
    resumed = train(cfg, tmp_path / "b", executor=fake_world, resume=True, progress=False)
    assert [r["update"] for r in read_jsonl(tmp_path / "b" / "metrics.jsonl")] == [1, 2, 3]
    assert [r["update"] for r in resumed] == [1, 2, 3]
    a, b = strip_timing(full[2]), strip_timing(resumed[2])
    assert a.keys() == b.keys()
    for key in a:
        assert b[key] == pytest.approx(a[key], abs=1e-6), key
    assert full[2]["grad_norm"] > 0  # the update did something
    from safetensors.torch import load_file
    wa = load_file(str(tmp_path / "a" / "final" / "model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "final" / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.allclose(wa[k], wb[k], atol=1e-7) for k in wa)


def test_sigint_stops_after_the_update_and_saves(tiny_policy_dir, fake_world, tmp_path):
    import os
    import signal

    def ctrl_c(m):  # a real SIGINT arriving during update 1's callback (as from a terminal)
        if m["update"] == 1:
            os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt, match="interrupted after update 1; checkpoint saved"):
        train(small_config(tiny_policy_dir), tmp_path, executor=fake_world, callback=ctrl_c, progress=False)
    assert signal.getsignal(signal.SIGINT) is before  # handler restored
    assert json.loads((tmp_path / "checkpoint" / "state.json").read_text())["update"] == 1
    assert [r["update"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [1]


def test_lora_run_resumes_from_its_adapter(tiny_policy_dir, fake_world, tmp_path):
    cfg = small_config(tiny_policy_dir, updates=2, lora_r=4, lr=1e-2)
    full = train(cfg, tmp_path / "a", executor=fake_world, progress=False)

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "b", executor=fake_world, callback=interrupt_after(1), progress=False)
    assert (tmp_path / "b" / "checkpoint" / "model" / "adapter_config.json").is_file()
    resumed = train(cfg, tmp_path / "b", executor=fake_world, resume=True, progress=False)
    assert full[0]["kl"] == 0.0 and full[1]["kl"] != 0.0  # reference = adapter disabled
    for key, value in strip_timing(full[1]).items():
        assert resumed[1][key] == pytest.approx(value, abs=1e-6), key
    assert (tmp_path / "b" / "final" / "adapter_config.json").is_file()


@pytest.mark.slow
def test_real_executor_run_metrics_are_consistent(tmp_path):
    """The shipped tiny-warmstart + real rollout, sandboxed executor and rewards on toy tasks: per-update
    means obey accumulated = gamma r_1 + (r_2 - r_1) (linear, so it holds for means) and acc_t <= reward_t."""
    cfg = small_config("tiny-warmstart", updates=2, prompts_per_update=3, gamma=0.5, max_new_tokens=48)
    hist = train(cfg, tmp_path, progress=False)
    assert max(m["reward_t1"] + m["reward_t2"] for m in hist) > 0  # the warm-start solves some tasks
    for m in hist:
        assert m["accumulated"] == pytest.approx(0.5 * m["reward_t1"] + m["reward_t2"] - m["reward_t1"], abs=1e-9)
        for t in (1, 2):
            assert 0.0 <= m[f"acc_t{t}"] <= m[f"reward_t{t}"] + 1e-12 <= 1.0 + 1e-12
        assert m["sec_execute"] > 0 and m["tokens"] > 0 and m["data_pos"] == 3 * m["update"]
    assert len(read_jsonl(tmp_path / "metrics.jsonl")) == 2


@pytest.mark.slow
def test_resume_equals_uninterrupted_with_the_real_world(tmp_path):
    """As the hash-executor test above, with the shipped tiny-warmstart and the real executor."""
    cfg = small_config("tiny-warmstart", prompts_per_update=4, max_new_tokens=64, seed=1)
    full = train(cfg, tmp_path / "a", progress=False)

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "b", callback=interrupt_after(2), progress=False)
    resumed = train(cfg, tmp_path / "b", resume=True, progress=False)
    assert any(m["grad_norm"] > 0 for m in full)  # some group had a learning signal
    for key, value in strip_timing(full[2]).items():
        assert resumed[2][key] == pytest.approx(value, abs=1e-6), key


def test_find_checkpoint_survives_a_cut_swap(tmp_path):
    old = tmp_path / "checkpoint.old"
    old.mkdir()
    (old / "state.json").write_text("{}")
    (old / "state.pt").write_bytes(b"")
    (tmp_path / "checkpoint.tmp").mkdir()  # a half-written one is never picked
    assert find_checkpoint(tmp_path) == old
    with pytest.raises(ConfigError, match="resume: no intact checkpoint in .*expected state.json and state.pt"):
        find_checkpoint(tmp_path / "checkpoint.tmp")


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def test_checkpoints_keep_two_with_checksums_and_resume_skips_a_damaged_one(tiny_policy_dir, fake_world, tmp_path):
    """#21 item 9: a truncated checkpoint/state.pt -> resume from checkpoint.prev (one line says so), and the
    resumed run equals the uninterrupted one from there; no intact one -> one line naming the file."""
    full = train(small_config(tiny_policy_dir, updates=4), tmp_path / "a", executor=fake_world, progress=False)
    run = tmp_path / "b"
    with pytest.raises(KeyboardInterrupt):
        train(small_config(tiny_policy_dir, updates=4, checkpoint_every=1), run, executor=fake_world,
              callback=interrupt_after(3), progress=False)
    sums = json.loads((run / "checkpoint" / "checksums.json").read_text())
    assert {"state.pt", "state.json", "model/config.json"} <= set(sums)
    assert json.loads((run / "checkpoint.prev" / "state.json").read_text())["update"] == 2
    assert json.loads((run / "checkpoint" / "state.json").read_text())["update"] == 3
    truncate(run / "checkpoint" / "state.pt")
    lines = []
    assert find_checkpoint(run, warn=lines.append) == run / "checkpoint.prev"
    assert lines == [f"resume: skipping a damaged checkpoint ({run / 'checkpoint' / 'state.pt'}: checksum mismatch "
                     f"(damaged or truncated)); resuming from {run / 'checkpoint.prev'} (update 2)"]
    resumed = train(small_config(tiny_policy_dir, updates=4), run, executor=fake_world, resume=True, progress=False)
    assert [strip_timing(m) for m in resumed] == [strip_timing(m) for m in full]
    truncate(run / "checkpoint" / "model" / "model.safetensors")
    truncate(run / "checkpoint.prev" / "state.pt")
    with pytest.raises(ConfigError, match=r"resume: no intact checkpoint in .*model.safetensors: checksum mismatch"):
        find_checkpoint(run)
    assert main(["--resume", str(run), "--no-progress"]) == 2


def test_a_checkpoint_without_checksums_that_torch_cannot_read_fails_in_one_line(tiny_policy_dir, fake_world, tmp_path):
    train(small_config(tiny_policy_dir, updates=1, checkpoint_every=1), tmp_path, executor=fake_world, progress=False)
    (tmp_path / "checkpoint" / "checksums.json").unlink()   # a checkpoint written before checksums existed
    truncate(tmp_path / "checkpoint" / "state.pt")
    with pytest.raises(ConfigError, match=r"resume: .*checkpoint/state.pt cannot be read \(.*\); resume from an older"):
        train(small_config(tiny_policy_dir, updates=2), tmp_path, executor=fake_world, resume=True, progress=False)


def test_restore_state_maps_a_gpu_checkpoint_to_the_cpu(monkeypatch, tmp_path):
    """A state.pt written on CUDA resumes on a CPU runtime: torch.load gets map_location='cpu'."""
    from cocos_lib import train as T
    seen = {}

    def fake_load(path, **kw):
        seen.update(kw)
        raise EOFError("stop here")
    monkeypatch.setattr(T.torch, "load", fake_load)
    (tmp_path / "state.pt").write_bytes(b"x")
    with pytest.raises(ConfigError, match="cannot be read"):
        T.restore_state(tmp_path, None)
    assert seen["map_location"] == "cpu"


# ----------------------------------------------------------------------------- CLI

def test_cli_help_and_bad_set_value(capsys, tmp_path):
    out = subprocess.run([sys.executable, "-m", "cocos_lib.train", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--profile" in out.stdout and "--resume" in out.stdout and "--set" in out.stdout
    assert main(["--profile", "tiny", "--out", str(tmp_path), "--set", "k=two"]) == 2
    err = capsys.readouterr().err
    assert err == "error: config field 'k': cannot parse 'two' as int (invalid literal for int() with base 10: 'two')\n"
    assert main(["--profile", "tiny", "--out", str(tmp_path), "--set", "k"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["--profile", "tiny", "--out", str(tmp_path), "--set", "model=/nonexistent/m"]) == 2
    assert capsys.readouterr().err.startswith("error: config field 'model': model '/nonexistent/m'")
    assert main(["--resume", str(tmp_path / "nothing")]) == 2
    assert "resume: no intact checkpoint in" in capsys.readouterr().err


def test_bf16_run_trains_fp32_master_weights(tiny_policy_dir, fake_world, tmp_path):
    """#15: bf16 full fine-tuning at lr 1e-5 keeps fp32 masters (optim.py): the norm weights (1.0) move in
    them although a bf16 step of 1e-5 rounds away; the checkpoint carries them for an exact resume."""
    train(small_config(tiny_policy_dir, dtype="bf16", lr=1e-5, updates=2, checkpoint_every=2), tmp_path,
          executor=fake_world, progress=False)
    masters = torch.load(tmp_path / "checkpoint" / "state.pt", weights_only=False)["optimizer"]["master_weights"]
    from safetensors.torch import load_file
    norms = [w for w in masters if w.dim() == 1]  # the RMSNorm weights, initialised at 1.0
    assert len(masters) == 20 and all(w.dtype == torch.float32 for w in masters) and len(norms) == 5
    assert all(bool((w != 1.0).all()) for w in norms)  # every element moved in fp32 ...
    saved = load_file(str(tmp_path / "final" / "model.safetensors"))
    assert all(bool((w == 1.0).all()) for k, w in saved.items() if "norm" in k)  # ... not yet in bf16


def test_resume_follows_a_changed_horizon_and_lr(tiny_policy_dir, fake_world, tmp_path, monkeypatch):
    """#15: `--resume RUN --updates 5` (the README's example) and `--set lr=` re-derive the schedule from the
    config: update 4 runs at lr * 0.5 (1 + cos(pi 3/5)) of the 5-update cosine, not at the old horizon's 0."""
    import shutil
    cfg = small_config(tiny_policy_dir, updates=3, checkpoint_every=3)
    first = train(cfg, tmp_path / "a", executor=fake_world, progress=False)
    assert first[2]["lr"] == pytest.approx(1e-3 * 0.25)  # cosine over 3: f(2) = 0.25; f(3) = 0 would be next
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    from cocos_lib import train as train_module
    monkeypatch.setattr(train_module, "open_executor", lambda workers=None: fake_world)  # the CLI's executor
    assert main(["--resume", str(tmp_path / "a"), "--updates", "5", "--no-progress"]) == 0
    a = read_jsonl(tmp_path / "a" / "metrics.jsonl")
    f = [0.5 * (1 + math.cos(math.pi * u / 5)) for u in range(5)]
    assert [r["update"] for r in a] == [1, 2, 3, 4, 5]
    assert a[3]["lr"] == pytest.approx(1e-3 * f[3]) and a[4]["lr"] == pytest.approx(1e-3 * f[4])
    b = train(small_config(tiny_policy_dir, updates=5, lr=2e-3, checkpoint_every=3), tmp_path / "b",
              executor=fake_world, resume=True, progress=False)
    assert b[3]["lr"] == pytest.approx(2e-3 * f[3]) and b[4]["lr"] == pytest.approx(2e-3 * f[4])
    assert b[3]["lr"] > 0 and [r["lr"] for r in b[:3]] == [r["lr"] for r in first]


def test_released_no_stop_rollouts_run_max_new_tokens(tiny_policy_dir, fake_world, tmp_path):
    """#15: stop_at_done=False + ignore_eos=True (the released rollouts): every row runs max_new_tokens, and
    the RL step masks each completion from its first pad-id token on (mask_from_pad), as TRL's RLOO."""
    cfg = small_config(tiny_policy_dir, stop_at_done=False, ignore_eos=True, updates=2)
    sampling = rollout_config_of(cfg).sampling
    assert sampling.stop is None and sampling.ignore_eos is True and cfg.rl_config().ignore_eos is True
    hist = train(cfg, tmp_path, executor=fake_world, progress=False)
    assert [m["tokens"] for m in hist] == [(2 + 4) * 6] * 2  # 2 shared turn-1 rows + 4 turn-2 rows, 6 tokens each
    assert all(m["tokens_trained"] <= 4 * 6 for m in hist)
    assert make_config("tiny").ignore_eos is False and make_config("tiny").rl_config().ignore_eos is False


def rollout_config_of(cfg):
    from cocos_lib.train import rollout_config
    return rollout_config(cfg)


def test_grad_norm_is_logged_before_clipping_every_update(tiny_policy_dir, fake_world, tmp_path):
    """#21 item 4: metrics.jsonl has the pre-clip gradient norm at every update (a clip at 1e-4 binds, the
    logged norm is still the raw one); paper and released do not clip."""
    rows = train(small_config(tiny_policy_dir, updates=2, max_grad_norm=1e-4), tmp_path, executor=fake_world,
                 progress=False)
    assert len(rows) == 2 and all(r["grad_norm"] > 1e-2 for r in rows)
    assert make_config("paper").rl_config().max_grad_norm is None
    assert make_config("released").rl_config().max_grad_norm is None
