"""The CoCoS training loop: rollouts + RLOO updates, metrics, checkpoints, CLI (configs: cocos_lib.config).

    python -m cocos_lib.train --profile tiny --out runs/tiny [--updates N] [--set key=value ...]
    python -m cocos_lib.train --resume runs/tiny [--updates N]

Per update u: take `prompts_per_update` tasks (epoch-shuffled from `seed`), sample k trajectories
of `turns` turns each (turn 1 shared by the group when `share_first_turn`), score them with the
executor (r_t, R with discount gamma), and take one `rl.rl_step`. One JSON line per update goes
to OUT/metrics.jsonl (grad_norm: the norm before clipping). With cfg.boost_steps > 0 the SFT warm-start
(cocos_lib.boost) runs first into OUT/boost/, and RL starts from OUT/boost/final (pi_theta and pi_ref).
OUT/checkpoint/ (and the one before it, OUT/checkpoint.prev/, each with a checksums.json) holds everything
needed to resume: the same data order, RNG states, optimizer state and weights. On the CPU the resumed run
computes the same floats as the uninterrupted one (the tests check it); on CUDA only with deterministic
algorithms (docs/paper.md §10), else it is the same run up to the last bits of nondeterministic kernels.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import pickle
import random
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from cocos_lib.boost import run_boost
from cocos_lib.config import PROFILES, ConfigError, TrainConfig, check_model, make_config, parse_overrides
from cocos_lib.executor import open_executor
from cocos_lib.hub import HubUnavailableError
from cocos_lib.learning_signal import signal_metrics
from cocos_lib.models import LoraSpec, frozen_reference, load_policy
from cocos_lib.optim import GuardedGradScaler, TrainingDiverged, make_optimizer
from cocos_lib.prompts import DONE, fewshot_for
from cocos_lib.rl import rl_step
from cocos_lib.rollout import RolloutConfig, rollout
from cocos_lib.sampling import SamplingConfig
from cocos_lib.task_files import TaskFormatError
from cocos_lib.task_sets import load_tasks
from cocos_lib.trajectory import Trajectory


# ------------------------------------------------------------------------------ data and lr

def task_indices(n: int, seed: int, start: int, count: int) -> list[int]:
    """Positions start..start+count-1 of the epoch-shuffled stream: epoch e uses permutation(seed, e)."""
    perms: dict[int, np.ndarray] = {}
    out = []
    for pos in range(start, start + count):
        epoch, j = divmod(pos, n)
        if epoch not in perms:
            perms[epoch] = np.random.default_rng([seed, epoch]).permutation(n)
        out.append(int(perms[epoch][j]))
    return out


def lr_factor(cfg: TrainConfig) -> Callable[[int], float]:
    """Multiplier of lr at update u (0-based): linear warm-up, then cosine / linear decay to 0, or constant."""
    def f(u: int) -> float:
        if u < cfg.warmup:
            return (u + 1) / (cfg.warmup + 1)
        if cfg.schedule == "constant":
            return 1.0
        progress = (u - cfg.warmup) / max(1, cfg.updates - cfg.warmup)
        return 0.5 * (1 + math.cos(math.pi * progress)) if cfg.schedule == "cosine" else max(0.0, 1 - progress)
    return f


# ------------------------------------------------------------------------------ checkpoints

CHECKSUMS = "checksums.json"   # sha256 of every file of a checkpoint, written last (its presence marks it complete)
KEPT = ("checkpoint", "checkpoint.prev")  # the newest checkpoint and the one before it


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()


def write_checksums(ckpt: Path) -> None:
    files = sorted(f for f in ckpt.rglob("*") if f.is_file() and f.name != CHECKSUMS)
    sums = {str(f.relative_to(ckpt)): _sha256(f) for f in files}
    (ckpt / CHECKSUMS).write_text(json.dumps(sums, indent=1))


def checkpoint_problem(ckpt: Path) -> str | None:
    """None when `ckpt` is intact: state.json and state.pt present and, when a checksums.json is beside them
    (every checkpoint written since it was introduced), every listed file there with its sha256. Else what
    is wrong, naming the file."""
    for name in ("state.json", "state.pt"):
        if not (ckpt / name).is_file():
            return f"{ckpt / name}: missing"
    sums_file = ckpt / CHECKSUMS
    if not sums_file.is_file():
        return None   # written before checksums existed: trusted as it is
    try:
        sums = json.loads(sums_file.read_text())
    except ValueError:
        return f"{sums_file}: not valid JSON"
    for rel, digest in sums.items():
        f = ckpt / rel
        if not f.is_file():
            return f"{f}: missing"
        if _sha256(f) != digest:
            return f"{f}: checksum mismatch (damaged or truncated)"
    return None


def save_checkpoint(run_dir: Path, policy, optimizer, scheduler, cfg: TrainConfig, update: int, data_pos: int,
                    scaler=None) -> Path:
    """Write RUN/checkpoint and keep the one before as RUN/checkpoint.prev. The new one is built in
    RUN/checkpoint.tmp (its checksums.json last), the older .prev is deleted first, then renames swap them in:
    at any moment at least one complete checkpoint is on disk, and at most two plus the one being written
    minus the deleted one, i.e. the disk holds 2 checkpoints at once (a ~17 GB paper state: ~34 GB)."""
    final, tmp, prev = run_dir / KEPT[0], run_dir / "checkpoint.tmp", run_dir / KEPT[1]
    shutil.rmtree(tmp, ignore_errors=True)
    if final.exists():
        shutil.rmtree(prev, ignore_errors=True)   # the newest stays intact while the next is written
    shutil.rmtree(run_dir / "checkpoint.old", ignore_errors=True)   # the name before checkpoint.prev
    tmp.mkdir(parents=True)
    policy.save(tmp / "model")
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}},
               tmp / "state.pt")
    (tmp / "state.json").write_text(json.dumps({"update": update, "data_pos": data_pos, "config": cfg.to_dict()}))
    write_checksums(tmp)
    if final.exists():
        final.rename(prev)
    tmp.rename(final)
    return final


def _update_of(ckpt: Path) -> int:
    try:
        return int(json.loads((ckpt / "state.json").read_text())["update"])
    except (ValueError, KeyError, TypeError):
        return -1


def find_checkpoint(path: str | os.PathLike, warn=None) -> Path:
    """The newest intact checkpoint of a run dir (RUN/checkpoint, RUN/checkpoint.prev, RUN/checkpoint.old after
    a cut swap of an older version), or `path` itself when it is a checkpoint dir. A damaged newest checkpoint
    is skipped with one line to `warn` (default: stderr); none intact: ConfigError naming each problem."""
    p = Path(path)
    candidates = [p] if (p / "state.json").exists() or (p / "state.pt").exists() else \
        [p / name for name in (*KEPT, "checkpoint.old") if (p / name).is_dir()]
    problems, intact = [], []
    for c in candidates:
        problem = checkpoint_problem(c)
        if problem is None:
            intact.append(c)
        else:
            problems.append(problem)
    if not intact:
        what = "; ".join(problems) if problems else "expected state.json and state.pt"
        raise ConfigError(f"resume: no intact checkpoint in '{path}' ({what}); start afresh without --resume")
    best = max(intact, key=_update_of)
    if problems:
        line = f"resume: skipping a damaged checkpoint ({problems[0]}); resuming from {best} (update {_update_of(best)})"
        (warn or (lambda m: print(m, file=sys.stderr)))(line)
    return best


def _read_metrics(path: Path, upto: int) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    return [r for r in rows if r["update"] <= upto]


def _trajectory_metrics(trajs: Sequence[Trajectory], cfg: TrainConfig) -> dict:
    m = {}
    for t in range(cfg.turns):
        m[f"reward_t{t + 1}"] = float(np.mean([tr.turns[t].reward for tr in trajs]))
        m[f"acc_t{t + 1}"] = float(np.mean([tr.turns[t].report.all_passed for tr in trajs]))
    m["accumulated"] = float(np.mean([tr.accumulated(cfg.gamma) for tr in trajs]))
    m.update(signal_metrics(trajs, cfg.turns, cfg.k))  # what the corrections do; groups that could teach at smaller k
    return m


# ------------------------------------------------------------------------------ the loop

def load_models(cfg: TrainConfig, ckpt: Path | None = None):
    """(pi_theta, pi_ref): pi_ref is always cfg.model (a frozen copy, or None = LoRA adapter disabled);
    pi_theta is cfg.model (+ a fresh LoRA) or, when resuming, the checkpoint's weights / adapter."""
    kw = dict(dtype=cfg.dtype, device=cfg.device, gradient_checkpointing=cfg.gradient_checkpointing,
              pad_token=cfg.pad_token)
    if ckpt is None:
        # no dropout (as TRL's RL trainers): the no-grad and the grad pass must see one network
        lora = LoraSpec(r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=0.0) if cfg.lora_r else None
        policy = load_policy(cfg.model, lora=lora, **kw)
        return policy, frozen_reference(policy)
    policy = load_policy(ckpt / "model", **kw)
    if cfg.lora_r:
        return policy, None
    ref = load_policy(cfg.model, dtype=cfg.dtype, device=cfg.device).model.eval().requires_grad_(False)
    return policy, ref


def rollout_config(cfg: TrainConfig):
    """The rollout.RolloutConfig (sampling, prompts, reward) of a TrainConfig. The turn-1 few-shot
    block (base models, cfg.fewshot > 0) is `prompts.fewshot_for`: MBPP prompt-split tasks for
    mbpp-* sets (docs/paper.md §2, §8), the shipped offline default otherwise."""
    sampling = SamplingConfig(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                              top_k=cfg.top_k,
                              stop=DONE if cfg.stop_at_done else None, batch_size=cfg.gen_batch_size,
                              ignore_eos=cfg.ignore_eos)
    return RolloutConfig(turns=cfg.turns, k=cfg.k, share_first_turn=cfg.share_first_turn, reward=cfg.reward,
                         sampling=sampling, fewshot=fewshot_for(cfg.tasks, cfg.fewshot),
                         ending=cfg.ending, backend=cfg.backend, exec_timeout_s=cfg.exec_timeout_s,
                         prompt_format=cfg.prompt_format, extraction=cfg.extraction)


def restore_state(ckpt: Path, optimizer, scaler=None) -> tuple[int, int]:
    """Load optimizer (fp32 masters included), loss-scaler and RNG states (python, numpy, torch, cuda);
    return (update, data_pos). The lr schedule is not restored: `set_schedule` derives it from the config."""
    try:  # map_location: a GPU run's state resumes anywhere (optimizer state follows the params)
        blob = torch.load(ckpt / "state.pt", weights_only=False, map_location="cpu")
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as e:
        raise ConfigError(f"resume: {ckpt / 'state.pt'} cannot be read ({str(e).splitlines()[0][:80]}); "
                          "resume from an older checkpoint dir, or start afresh") from None
    optimizer.load_state_dict(blob["optimizer"])
    if scaler is not None and blob.get("scaler"):
        scaler.load_state_dict(blob["scaler"])
    rng = blob["rng"]
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    state = json.loads((ckpt / "state.json").read_text())
    return state["update"], state["data_pos"]


def set_schedule(optimizer, scheduler, cfg: TrainConfig, update: int) -> None:
    """lr, weight decay and schedule position from cfg at update `update` (0-based), whatever a restored
    optimizer state held: a resume with another `updates` (horizon), `lr`, `warmup` or `schedule` follows the
    new config from its first update on (lr * lr_factor(cfg)(update)), and an unchanged config gives the
    same floats as the uninterrupted run."""
    for group in optimizer.param_groups:
        group["initial_lr"] = cfg.lr
        group["lr"] = cfg.lr * lr_factor(cfg)(update)
        group["weight_decay"] = cfg.weight_decay
    scheduler.base_lrs = [cfg.lr for _ in optimizer.param_groups]
    scheduler.last_epoch = update


class StopOnSigint:
    """In the block, a first Ctrl-C sets .requested (stop after this update), a second raises
    KeyboardInterrupt at once. A no-op off the main thread (signals can't be set there)."""
    requested, previous = False, None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\ninterrupt: stopping after this update (Ctrl-C again: abort, no save)", file=sys.stderr)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global RNGs (a run's start; a resume restores them instead)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def update_metrics(*, update: int, trajs: Sequence[Trajectory], step: dict, cfg: TrainConfig, lr: float, stats: dict,
                   sec_rollout: float, sec_update: float, elapsed: float, data_pos: int, n_tasks: int) -> dict:
    """One line of metrics.jsonl: rewards per turn and R (trajectories), rl_step's metrics, lr, tokens, timings,
    untrusted_tests (share of test outcomes not decided outside the candidate, see rollout)."""
    return {"update": update, **_trajectory_metrics(trajs, cfg), **step, "lr": lr,
            "tokens": stats.get("tokens", 0), "sec_generate": stats.get("sec_generate", sec_rollout),
            "sec_execute": stats.get("sec_execute", 0.0), "untrusted_tests": stats.get("untrusted_tests", 0.0),
            "sec_rollout": sec_rollout, "sec_update": sec_update,
            "elapsed": elapsed, "data_pos": data_pos, "epoch": data_pos // n_tasks}


def train(cfg: TrainConfig, out_dir: str | os.PathLike, executor=None, resume: bool | str = False,
          callback: Callable[[dict], None] | None = None, progress: bool = True) -> list[dict]:
    """Run updates until cfg.updates into out_dir; returns every update's metrics (all of metrics.jsonl).

    executor: runs the unit tests (`run_many(jobs)`, as executor.Executor); None: executor.open_executor
    with cfg.exec_workers workers for this call, closed at the end.
    resume: True (out_dir/checkpoint) or a checkpoint/run dir: restores model, optimizer, RNG states and
    data position; the lr schedule follows cfg (a changed `updates` or `lr` applies from the next update);
    metrics.jsonl keeps updates <= the checkpoint's and is appended to.
    Ctrl-C (or a KeyboardInterrupt from `callback`) stops between updates, saves a checkpoint and
    raises KeyboardInterrupt; a second Ctrl-C aborts at once without saving. Without resume, a
    previous run's metrics, checkpoint and final model in out_dir are replaced.
    """
    # ---------------------------------------------------------------- set-up
    cfg.validate()
    check_model(cfg)  # before any work
    run = Path(out_dir)
    ckpt = find_checkpoint(run if resume is True else resume) if resume else None
    rcfg, rl_cfg = rollout_config(cfg), cfg.rl_config()
    tasks = load_tasks(cfg.tasks)[:cfg.n_tasks]
    run.mkdir(parents=True, exist_ok=True)
    for stale in ([] if ckpt else [*KEPT, "checkpoint.old", "checkpoint.tmp", "final", "boost"]):
        shutil.rmtree(run / stale, ignore_errors=True)  # a fresh run owns its directory
    # Boost (cfg.boost_steps > 0): SFT warm-start into RUN/boost/final; RL starts there (pi_theta and pi_ref)
    start = str(run_boost(cfg, run / "boost", progress)) if cfg.boost_steps else cfg.model
    seed_everything(cfg.seed)
    policy, ref = load_models(dataclasses.replace(cfg, model=start), ckpt)
    optimizer = make_optimizer(policy.model, cfg.lr, cfg.weight_decay)  # fp32 masters for bf16 weights
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg))
    fp16 = next(policy.model.parameters()).dtype == torch.float16
    scaler = GuardedGradScaler(policy.device.type) if fp16 else None  # loss scaling for fp16 weights
    update, data_pos = restore_state(ckpt, optimizer, scaler) if ckpt else (0, 0)
    history = _read_metrics(run / "metrics.jsonl", update)
    set_schedule(optimizer, scheduler, cfg, update - sum(m.get("skipped", 0) for m in history))  # applied steps
    (run / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))

    def save() -> None:
        save_checkpoint(run, policy, optimizer, scheduler, cfg, update, data_pos, scaler)

    bar = tqdm(total=cfg.updates, initial=update, desc="train", disable=not progress, dynamic_ncols=True)
    t_start, consistent, saved_at = time.time(), True, update
    own = open_executor(workers=cfg.exec_workers) if executor is None else contextlib.nullcontext(executor)

    # ---------------------------------------------------------------- loop
    with StopOnSigint() as stop, own as executor:
        try:
            while update < cfg.updates and not stop.requested:
                consistent = False  # rollout: prompts_per_update tasks x k trajectories, scored by the executor
                t0 = time.perf_counter()
                idx = task_indices(len(tasks), cfg.seed, data_pos, cfg.prompts_per_update)
                stats: dict = {}
                bar.set_postfix_str(f"update {update + 1}: rollout", refresh=True)  # phases take minutes on a CPU
                trajs = rollout(policy, [tasks[i] for i in idx], rcfg, executor,
                                seed=cfg.seed * 100_003 + update, stats=stats)
                sec_rollout = time.perf_counter() - t0
                lr = optimizer.param_groups[0]["lr"]
                bar.set_postfix_str(f"update {update + 1}: RLOO step", refresh=True)  # update: one RLOO step
                step = rl_step(policy, ref, optimizer, scheduler, trajs, rl_cfg, scaler)
                optimizer.zero_grad(set_to_none=True)
                update += 1
                data_pos += len(idx)
                # log
                m = update_metrics(update=update, trajs=trajs, step=step, cfg=cfg, lr=lr, stats=stats,
                                   sec_rollout=sec_rollout, sec_update=time.perf_counter() - t0,
                                   elapsed=time.time() - t_start, data_pos=data_pos, n_tasks=len(tasks))
                with open(run / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(m) + "\n")
                history.append(m)
                consistent = True
                bar.update(1)
                bar.set_postfix(reward=f"{m[f'reward_t{cfg.turns}']:.3f}", kl=f"{m['kl']:.4f}")
                # checkpoint
                if cfg.checkpoint_every and update % cfg.checkpoint_every == 0:
                    save()
                    saved_at = update
                # stop? (the callback may raise KeyboardInterrupt, as Ctrl-C)
                if callback is not None:
                    callback(m)
        except KeyboardInterrupt:
            if not consistent:
                raise
            stop.requested = True
        finally:
            bar.close()

    # ---------------------------------------------------------------- finish
    if (cfg.checkpoint_every or stop.requested) and (saved_at != update or not (run / "checkpoint").exists()):
        save()
    if stop.requested:
        raise KeyboardInterrupt(f"interrupted after update {update}; checkpoint saved in {run / 'checkpoint'}")
    policy.save(run / "final")
    return history


# ------------------------------------------------------------------------------ CLI

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cocos_lib.train", description="CoCoS RL training (RLOO, multi-turn).")
    p.add_argument("--profile", choices=sorted(PROFILES),
                   help="tiny (CPU, default), cpu (real 0.5B model on CPU), colab (T4), paper (docs/paper.md), "
                        "released (the release's own choices)")
    p.add_argument("--out", help="run directory (metrics.jsonl, checkpoint/, final/)")
    p.add_argument("--updates", type=int, help="number of updates (overrides the profile)")
    p.add_argument("--resume", metavar="DIR", help="run or checkpoint dir to continue (its config unless --profile)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a TrainConfig field")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        overrides = parse_overrides(args.set)
        overrides.update({} if args.updates is None else {"updates": args.updates})
        ckpt = find_checkpoint(args.resume) if args.resume else None
        saved = json.loads((ckpt / "state.json").read_text())["config"] if ckpt and not args.profile else None
        cfg = make_config(args.profile or "tiny", base=saved, **overrides)
        out = args.out or (str(ckpt.parent) if ckpt else None)
        if out is None:
            raise ConfigError("--out DIR is required (or --resume DIR)")
        train(cfg, out, resume=str(ckpt) if ckpt else False, progress=not args.no_progress)
    except (ConfigError, TaskFormatError, HubUnavailableError, TrainingDiverged) as e:  # one line
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"stopped: {e}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
