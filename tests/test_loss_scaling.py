"""fp16 loss scaling made visible (cocos_lib/optim.py optimizer_step, GuardedGradScaler; rl.rl_step's metrics and
its finite check of the log-probs): a skipped step is logged (skipped, loss_scale), does not advance the lr schedule,
never writes grad_norm=Infinity, too many in a row stop the run in one line, and an overflowing forward stops it
at once (from the first rollout on). torch.amp.GradScaler("cpu") runs the same skip logic as on CUDA."""
import json
import math

import pytest
import torch

from cocos_lib.models import load_policy
from cocos_lib.optim import GuardedGradScaler, TrainingDiverged, make_optimizer, optimizer_step
from cocos_lib.rl import RLConfig, rl_step


def one_param_step(grad: float, scaler, scheduler_log: list):
    """A step of a 1-parameter AdamW whose (scaled) gradient is `grad`."""
    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.AdamW([w], lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda u: 1.0 / (u + 1))
    scaler.scale((w * torch.full((3,), grad)).sum()).backward()
    stats = {}
    norm = optimizer_step(opt, sched, scaler, max_norm=1.0, stats=stats)
    scheduler_log.append(sched.last_epoch)
    return w, norm, stats


def test_a_skipped_step_is_logged_and_does_not_advance_the_schedule():
    scaler = torch.amp.GradScaler("cpu")
    log = []
    w, norm, stats = one_param_step(math.inf, scaler, log)
    assert stats == {"skipped": 1, "loss_scale": 65536.0} and not math.isfinite(norm)
    assert torch.equal(w.detach(), torch.ones(3)) and log == [0]        # no optimizer step, no scheduler step
    assert scaler.get_scale() == 32768.0                                 # the scaler backed off
    w, norm, stats = one_param_step(0.5, scaler, log)
    assert stats == {"skipped": 0, "loss_scale": 32768.0} and norm == pytest.approx(math.sqrt(3) * 0.5)
    assert log == [0, 1] and not torch.equal(w.detach(), torch.ones(3))
    plain = {}
    optimizer_step(torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1), None, None, None, stats=plain)
    assert plain == {"skipped": 0, "loss_scale": None}


def test_guarded_scaler_stops_after_too_many_skips_in_a_row_in_one_line():
    scaler = GuardedGradScaler("cpu", limit=3)
    log = []
    for grad in (math.inf, math.inf, 0.5, math.inf, math.inf):            # a good step resets the count
        one_param_step(grad, scaler, log)
    assert scaler.skips_in_a_row == 2 and log == [0, 0, 1, 0, 0]
    with pytest.raises(TrainingDiverged) as e:
        one_param_step(math.inf, scaler, log)
    assert str(e.value) == ("fp16 loss scaling skipped 3 steps in a row (loss scale now 2048): the gradients "
                            "overflow at any scale; use dtype bf16 (compute >= 8.0) or fp32")
    assert GuardedGradScaler("cpu").limit == 12


def test_rl_step_metrics_of_a_skipped_step_have_no_infinity(tiny_policy_dir):
    """A scale so large that the scaled gradients overflow fp32: the step is skipped, and the metrics line is
    valid JSON (grad_norm None rather than Infinity), with skipped and loss_scale."""
    from test_rl import make_trajs
    tiny_policy = load_policy(tiny_policy_dir, dtype="fp32", device="cpu")   # its own: this test trains it
    trajs = make_trajs([[(0.0, 1.0), (0.0, 0.0)], [(1.0, 1.0), (1.0, 0.5)]])
    before = [p.detach().clone() for p in tiny_policy.model.parameters()]
    opt = torch.optim.AdamW(tiny_policy.model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda u: 1.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 126)
    m = rl_step(tiny_policy, None, opt, sched, trajs, RLConfig(micro_batch=4), scaler)
    assert m["skipped"] == 1 and m["loss_scale"] == 2.0 ** 126 and m["grad_norm"] is None
    assert "Infinity" not in json.dumps(m) and "NaN" not in json.dumps(m)
    assert sched.last_epoch == 0 and all(torch.equal(a, p) for a, p in zip(before, tiny_policy.model.parameters()))
    m = rl_step(tiny_policy, None, opt, sched, trajs, RLConfig(micro_batch=4), torch.amp.GradScaler("cpu"))
    assert m["skipped"] == 0 and m["grad_norm"] > 0 and sched.last_epoch == 1


def test_an_overflowing_forward_stops_the_step_at_once(tiny_policy_dir):
    """From the first rollout's update on, rl_step checks the trained log-probs are finite: an fp16 activation beyond
    65,504 makes them nan, which loss scaling cannot fix (it scales gradients), so it stops in one line."""
    from test_rl import make_trajs
    policy = load_policy(tiny_policy_dir, dtype="fp16", device="cpu")
    trajs = make_trajs([[(0.0, 1.0), (0.0, 0.0)], [(1.0, 1.0), (1.0, 0.5)]])
    opt = make_optimizer(policy.model, lr=0.0)                          # fp32 masters: the scaler unscales those
    m = rl_step(policy, None, opt, None, trajs, RLConfig(micro_batch=4), GuardedGradScaler("cpu"))
    assert math.isfinite(m["loss"])
    with torch.no_grad():                         # an MLP output beyond fp16's 65,504, as an overflowing layer's
        policy.model.model.layers[0].mlp.up_proj.weight.mul_(100.0)
        policy.model.model.layers[0].mlp.down_proj.weight.fill_(6e4)
    with pytest.raises(TrainingDiverged, match=r"non-finite log-probs from the torch.float16 forward \(an activation "
                                               r"overflowed\); use dtype bf16"):
        rl_step(policy, None, opt, None, trajs, RLConfig(micro_batch=4), GuardedGradScaler("cpu"))


def test_resume_counts_applied_steps_not_skipped_ones(tiny_policy_dir, tmp_path):
    """train(): an update the fp16 scaler skipped did not advance the schedule, so a resume sets the lr from the
    applied steps (update - skipped in metrics.jsonl), as the uninterrupted run's scheduler stood."""
    from test_train import HashExecutor, read_jsonl, small_config
    from cocos_lib.train import train
    cfg = small_config(tiny_policy_dir, updates=3, checkpoint_every=2, schedule="linear")
    train(cfg, tmp_path, executor=HashExecutor(), progress=False)
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["skipped"] for r in rows] == [0, 0, 0] and [r["loss_scale"] for r in rows] == [None] * 3
    rows[1]["skipped"] = 1                                     # as if update 2 had overflowed in fp16
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    resumed = train(small_config(tiny_policy_dir, updates=4, checkpoint_every=2, schedule="linear"), tmp_path,
                    executor=HashExecutor(), resume=True, progress=False)   # from the final checkpoint (update 3)
    assert len(resumed) == 4 and resumed[3]["skipped"] == 0
    assert resumed[3]["lr"] == pytest.approx(1e-3 * (1 - 2 / 4))  # lr_factor(3 - 1 skipped), linear over 4
    assert 1e-3 * (1 - 3 / 4) < resumed[3]["lr"]                  # not lr_factor(3): the skip did not count
