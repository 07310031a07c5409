"""The Boost stage: a supervised warm-start (SFT) before CoCoS RL, as the release trained its checkpoints.

    python -m cocos_lib.boost --profile tiny --out runs/boost [--steps N] [--set key=value ...]
    (python -m cocos_lib.train runs it first by itself when the config's boost_steps > 0, as `paper` does)

Data (`boost_pairs`), one turn-1 pair and one turn-2 pair per task (the release's 1:1 ratio), each a
prompt and a completion whose concatenation is the release's SFT text (its README's "Boost Data Format"):

    turn 1:  prompts.build_prompt(task, [])                   -> "{code}\\n[DONE]"
    turn 2:  prompts.build_prompt(task, [first], "correct")   -> "{code}\\n[DONE]"

i.e. "{question}\\n\\n[BEGIN]\\n{code}\\n[DONE]" and "...[DONE]\\n\\n{instruction}\\n\\n[CORRECT]\\n{code}\\n[DONE]",
the RL prompts byte for byte. The loss is the mean cross-entropy of the completion tokens of the batch (the
release's collator trains the text after the last [CORRECT], else after the last [BEGIN]); no EOS is appended.

Where the release is silent (each a choice of this module, stated): which tasks (here the task set of the run,
MBPP train for `paper`, `reference` as the code); what the turn-2 pair's first attempt is (here: the
caller's `first_turns` per task_id, e.g. a model's own sampled answers; by default the reference itself, i.e.
the pair teaches "keep a correct answer", as offline data holds no wrong attempts); how many steps (the
release: at most 1,000 with early stopping on an eval loss every 10%, patience 1, best model kept; here a
fixed `steps`). Its other settings, as released: lr 2e-5, cosine, no warm-up, no weight decay, global batch
256, bf16, gradient clipping at 1.0 (the HF Trainer's default, which its SFT run keeps; its RL run does not
clip). LoRA: the adapter is merged into the weights at the end, so RL starts from one full model
(pi_theta and pi_ref both start from the Boost model, as in the release).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from cocos_lib.config import PROFILES, ConfigError, make_config, parse_overrides
from cocos_lib.hub import HubUnavailableError
from cocos_lib.models import LoraSpec, load_policy
from cocos_lib.optim import make_optimizer, optimizer_step
from cocos_lib.prompts import DONE, build_prompt
from cocos_lib.task_sets import load_tasks
from cocos_lib.tasks import Task, TaskFormatError

MAX_GRAD_NORM = 1.0   # the HF Trainer's default, kept by the release's Boost run


@dataclass(frozen=True)
class Pair:
    """One SFT example: the model reads `prompt` and is trained on `completion`."""
    prompt: str
    completion: str
    turn: int          # 1 or 2
    task_id: str


@dataclass(frozen=True)
class BoostConfig:
    """The SFT stage's knobs (TrainConfig's boost_* fields and the model's own)."""
    steps: int = 100                # optimizer steps
    batch: int = 256                # pairs per step (global batch)
    lr: float = 2e-5
    micro_batch: int = 8            # pairs per forward/backward
    max_tokens: int = 2048          # a pair is cut to its first max_tokens tokens
    seed: int = 42


class BoostError(ValueError):
    """Bad Boost data or settings, one line naming the field."""


def boost_pairs(tasks: Sequence[Task], first_turns: Mapping[str, str] | None = None) -> list[Pair]:
    """Turn-1 and turn-2 pairs, 1:1, task by task (module docstring). first_turns: task_id -> the first attempt
    shown in the turn-2 pair (default: the task's reference)."""
    pairs = []
    for t in tasks:
        if t.reference is None:
            raise BoostError(f"boost: field 'reference': task {t.task_id} has no solution to train on")
        code = t.reference.strip()
        first = (first_turns or {}).get(t.task_id, code)
        pairs.append(Pair(build_prompt(t, []), f"{code}\n{DONE}", 1, t.task_id))
        pairs.append(Pair(build_prompt(t, [first], ending="correct"), f"{code}\n{DONE}", 2, t.task_id))
    return pairs


def epoch_order(n: int, seed: int, start: int, count: int) -> list[int]:
    """Positions start..start+count-1 of the epoch-shuffled order of n pairs (epoch e: permutation(seed, e))."""
    return [int(np.random.default_rng([seed, e]).permutation(n)[j]) for e, j in
            (divmod(pos, n) for pos in range(start, start + count))]


def encode_pair(tokenizer, pair: Pair, max_tokens: int) -> tuple[list[int], int]:
    """(ids of prompt + completion cut to max_tokens, number of prompt tokens). The prompt's tokens are those
    of the joint text before the first token that starts at or after the prompt's end (a token across the
    boundary counts as prompt; the prompt ends with the marker's "\n", which the release's collator trains
    and this one does not: one token)."""
    enc = tokenizer(pair.prompt + pair.completion, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]
    end = len(pair.prompt)
    n_prompt = next((i for i, (a, b) in enumerate(offsets) if a >= end and b > a), len(ids))
    return ids[:max_tokens], min(n_prompt, max_tokens)


def sft_loss(model, tokenizer, rows: Sequence[tuple[list[int], int]], device, n_tokens: int):
    """Sum over the rows' completion tokens of -log p, divided by n_tokens (the batch's count): a micro-batch's
    share of the token-mean loss. Rows are right-padded; prompt and pad positions are masked."""
    L = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(rows), L), pad, dtype=torch.long)
    att = torch.zeros((len(rows), L), dtype=torch.long)
    labels = torch.full((len(rows), L), -100, dtype=torch.long)
    for i, (row, n_prompt) in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row)
        att[i, :len(row)] = 1
        labels[i, n_prompt:len(row)] = ids[i, n_prompt:len(row)]
    ids, att, labels = ids.to(device), att.to(device), labels.to(device)
    logits = model(input_ids=ids, attention_mask=att).logits[:, :-1].float()      # [B, L-1, V]
    target = labels[:, 1:]                                                        # [B, L-1]
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                            ignore_index=-100, reduction="sum")
    return nll / max(n_tokens, 1)


def boost(policy, pairs: Sequence[Pair], cfg: BoostConfig, out_dir: str | os.PathLike | None = None,
          progress: bool = True) -> list[dict]:
    """`cfg.steps` SFT steps on `policy` (in place) over the pairs (epoch-shuffled from cfg.seed); one metrics
    dict per step (also appended to OUT/boost_metrics.jsonl); the model (LoRA merged) is saved to OUT/final."""
    if not pairs:
        raise BoostError("boost: field 'pairs': no training pairs")
    checks = [(cfg.steps >= 1, "steps"), (cfg.batch >= 1, "batch"), (cfg.micro_batch >= 1, "micro_batch"),
              (cfg.lr > 0, "lr"), (cfg.max_tokens >= 2, "max_tokens")]
    for ok, name in checks:
        if not ok:
            raise BoostError(f"boost: field '{name}'={getattr(cfg, name)!r}: out of range")
    torch.manual_seed(cfg.seed)
    model, tok = policy.model, policy.tokenizer
    model.train()
    encoded = [encode_pair(tok, p, cfg.max_tokens) for p in pairs]
    optimizer = make_optimizer(model, cfg.lr, 0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda u: 0.5 * (1 + math.cos(math.pi * u / cfg.steps)))   # cosine to 0, no warm-up
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "boost_metrics.jsonl").write_text("")
    history, t_start = [], time.time()
    for step in tqdm(range(cfg.steps), desc="boost", disable=not progress):
        t0 = time.perf_counter()
        idx = epoch_order(len(pairs), cfg.seed, step * cfg.batch, cfg.batch)
        rows = [encoded[i] for i in idx]
        n_tokens = sum(len(ids) - n for ids, n in rows)
        lr = optimizer.param_groups[0]["lr"]
        loss = 0.0
        for s in range(0, len(rows), cfg.micro_batch):
            part = sft_loss(model, tok, rows[s:s + cfg.micro_batch], policy.device, n_tokens)
            part.backward()
            loss += float(part.detach())
        grad_norm = optimizer_step(optimizer, scheduler, None, MAX_GRAD_NORM)
        optimizer.zero_grad(set_to_none=True)
        m = {"step": step + 1, "loss": loss, "grad_norm": grad_norm, "lr": lr, "tokens": n_tokens,
             "turn2_share": sum(pairs[i].turn == 2 for i in idx) / len(idx),
             "sec_step": time.perf_counter() - t0, "elapsed": time.time() - t_start}
        history.append(m)
        if out is not None:
            with open(out / "boost_metrics.jsonl", "a") as f:
                f.write(json.dumps(m) + "\n")
    if hasattr(optimizer, "remove_hooks"):
        optimizer.remove_hooks()
    model.eval()
    if policy.is_lora:
        policy.model = model.merge_and_unload()
    if out is not None:
        policy.save(out / "final")
    return history


def boost_config(cfg) -> BoostConfig:
    """The BoostConfig of a train.TrainConfig (its boost_* fields, micro_batch and seed)."""
    return BoostConfig(steps=cfg.boost_steps, batch=cfg.boost_batch, lr=cfg.boost_lr, micro_batch=cfg.micro_batch,
                       seed=cfg.seed)


def run_boost(cfg, out_dir: str | os.PathLike, progress: bool = True) -> Path:
    """Boost for a TrainConfig: load cfg.model (its dtype, device, LoRA), train on the pairs of cfg.tasks
    (first n_tasks), save OUT/final and return it. OUT/final already there (a resumed run): returned as is."""
    final = Path(out_dir) / "final"
    if (final / "config.json").is_file():
        return final
    lora = LoraSpec(r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=0.0) if cfg.lora_r else None
    policy = load_policy(cfg.model, dtype=cfg.dtype, device=cfg.device, lora=lora,
                         gradient_checkpointing=cfg.gradient_checkpointing, pad_token=cfg.pad_token)
    pairs = boost_pairs(load_tasks(cfg.tasks)[:cfg.n_tasks])
    boost(policy, pairs, boost_config(cfg), out_dir, progress)
    return final


# ------------------------------------------------------------------------------ CLI

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cocos_lib.boost", description="Boost: the SFT warm-start before RL.")
    p.add_argument("--profile", choices=sorted(PROFILES), default="tiny")
    p.add_argument("--out", required=True, help="output dir (boost_metrics.jsonl, final/)")
    p.add_argument("--steps", type=int, help="SFT steps (overrides the profile's boost_steps)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a TrainConfig field")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    try:
        overrides = parse_overrides(args.set)
        overrides.update({} if args.steps is None else {"boost_steps": args.steps})
        cfg = make_config(args.profile, **overrides)
        if cfg.boost_steps < 1:
            raise ConfigError(f"config field 'boost_steps'={cfg.boost_steps}: Boost needs >= 1 step (--steps N)")
        final = run_boost(cfg, args.out, progress=not args.no_progress)
    except (ConfigError, BoostError, TaskFormatError, HubUnavailableError) as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    print(final)
    return 0


if __name__ == "__main__":
    sys.exit(main())
