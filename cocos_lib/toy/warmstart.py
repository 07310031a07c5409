"""The toy world's policy: a character-level Llama and its warm-start (SFT) on the tasks of
`cocos_lib.toy.world`, so that CoCoS can be *seen* learning on a laptop CPU.

Candidly: the reluctance to revise is built in. The warm-start is trained to imitate what
the paper measured in real 1B models (docs/paper.md §7, "Why small models need this"):
- turn 1 has a *systematic misconception* on 7 of the 16 operations (e.g. `v>=n` for "greater
  than n", `s[n:]` for "the last n characters", `x-n` for "the distance to n", `max(a)` for
  "the largest number, or n if the list is empty"); the task text and tests contradict it,
  yet the misconception usually passes some of the K = 4 tests (toy_world.py);
- turn 2 mostly *copies* the first attempt: given a wrong attempt it copies with probability
  1 - repair_rate and repairs with probability repair_rate (0.15), given a right one it copies.
  Greedy decoding thus copies (Acc@t2 ~ Acc@t1), while sampling at temperature 0.9 sometimes
  repairs: the signal that RL (rl.py) amplifies. The real phenomenon is measured with real
  models in the GPU profiles; here it is a stand-in that keeps the same code path.

Measured on toy-test (200 tasks), greedy, 2 turns (64 or 512 new tokens give the same answers):
- shipped warm-start (rebuilt for the released prompt layout, issue 21: a blank line before [BEGIN], and
  [BEGIN] before the previous code; repair_rate 0.15, no loss on a turn-2 prompt's attempt), as tests/test_toy.py
  measures it: Acc@t1 50.5%, Acc@t2 50.5%, i->c 0.0%, c->i 0.0%, no-edit rate 100%; 89.9% of the wrong turn-1
  answers pass some but not all tests (evaluated beside another process: 49.5% / 51.0%, i->c 1.5%); sampled
  (temperature 0.9) on 40 misconceptions x 4, turn 2 copies 81% and repairs 15%. Eight rebuilds under the new layout and what each measured:
  data/results/toy/warmstart_rebuilds.jsonl (the previous warm-start, trained on the old layout: 47.0% /
  47.0%, i->c 0.0%, no-edit 97.5%).
- with the previous warm-start and prompt layout, after `python -m cocos_lib.train --profile tiny --out DIR`
  (40 updates, 427 s on the loaded
  2-core machine with OMP_NUM_THREADS=1) and `python -m cocos_lib.evaluate --policy DIR/final
  --tasks toy-test --turns 2 --out F`: Acc@t1 65.5%, Acc@t2 87.5%, i->c 22.5%, c->i 0.5%
  (unit-level 22.5% / 1.5%), no-edit rate 79%. Turn 1 improves too: it shares the weights.
Rebuild: `python -m cocos_lib.toy.warmstart build-warmstart` (2000 SFT steps, 23 min on one core while the
other built a second one: the checkpoint is shipped so nobody has to). The context is 2048
positions (RoPE: no position weights), so a 512-token evaluation keeps the whole turn-2 prompt.
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

from cocos_lib.prompts import DONE, MARKERS, build_prompt
from cocos_lib.toy.world import code_for, misconception, parse_task, toy_tasks

# stdlib-only at import: config (no torch at import) and models read TINY_WARMSTART and warmstart_path from here;
# torch, transformers, tokenizers and tqdm load inside the functions that build or train the model.

TINY_WARMSTART = "tiny-warmstart"  # the model name of the shipped warm-start (cocos_lib/assets/tiny-warmstart)
SPECIALS = ("<pad>", "<eos>", "<unk>", *MARKERS)
CHARS = ("\n",) + tuple(chr(i) for i in range(32, 127))


# ------------------------------------------------------------------------------ policy

@dataclass(frozen=True)
class WarmstartConfig:
    """The tiny policy (a Llama, one token per character) and its SFT. repair_rate: share of
    turn-2 targets that repair a wrong attempt (the rest copy it); p_other: share of turn-2
    examples whose previous attempt is not the model's habitual turn-1 answer.
    turn2_every: every such step is a turn-2 batch, the others turn 1. prompt_weight: weight of
    the language-modelling loss on prompt tokens (the repeated names in the asserts teach the
    model to copy; targets weigh 1). hard_share: share of difficulty-2 train tasks (constants
    up to 99), so that copying the constant beats memorising the few difficulty-1 ones. attempt_weight: weight of
    the language-modelling loss on what a turn-2 prompt adds after the task header (the previous attempt, the
    instruction): the released layout opens that attempt with "[BEGIN]" as turn 1's answer is opened, so a
    weighted attempt would also train turn 1 (on the reference of a misconceived op, whenever p_other shows it)."""
    hidden_size: int = 128
    layers: int = 2
    heads: int = 4
    steps: int = 2000
    batch_size: int = 16
    lr: float = 3e-3
    warmup: int = 30
    repair_rate: float = 0.15
    p_other: float = 0.2
    turn2_every: int = 3
    prompt_weight: float = 0.5
    hard_share: float = 0.3
    n_train_tasks: int = 4000
    threads: int = 1
    attempt_weight: float = 0.0


def char_tokenizer():
    """PreTrainedTokenizerFast with one token per character ("\\n" and ASCII 32-126); <pad>,
    <eos>, <unk> and the markers [BEGIN] [DONE] [CORRECT] are single special tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers  # lazy: tokenizers (see the note at the imports)
    from transformers import PreTrainedTokenizerFast  # lazy: transformers (see the note at the imports)
    vocab = {t: i for i, t in enumerate(SPECIALS + CHARS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(list(SPECIALS))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>",
                                   extra_special_tokens=list(SPECIALS[3:]), clean_up_tokenization_spaces=False)
    fast.padding_side = "left"
    return fast


def tiny_model(tokenizer, cfg: WarmstartConfig, seed: int = 0):
    """A random-init LlamaForCausalLM sized by cfg; generation also stops at the [DONE] token."""
    import torch  # lazy: torch (see the note at the imports)
    from transformers import LlamaConfig, LlamaForCausalLM  # lazy: transformers (see the note at the imports)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=cfg.hidden_size,
                         intermediate_size=3 * cfg.hidden_size, num_hidden_layers=cfg.layers,
                         num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads,
                         max_position_embeddings=2048, tie_word_embeddings=True, bos_token_id=None,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(DONE)]
    model.generation_config.bos_token_id = None
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def warmstart_path() -> Path:
    """The shipped warm-start checkpoint (`load_policy(TINY_WARMSTART)` resolves to it)."""
    return Path(__file__).resolve().parent.parent / "assets" / TINY_WARMSTART


# ------------------------------------------------------------------------------ warm-start SFT

def previous_attempt(task, cfg: WarmstartConfig, rng: random.Random) -> str:
    """The turn-1 code a turn-2 SFT example revises: mostly the warm-start's own habit (the
    misconception, else the reference); with prob. p_other another attempt: the reference
    for misconceived ops, a wrong constant for the others. Mirroring turn 1's distribution
    keeps greedy turn 2 on the copy even where the model does not look at the attempt."""
    habit = misconception(task) or task.reference
    if rng.random() >= cfg.p_other:
        return habit
    op, c = parse_task(task)
    return task.reference if op.bug else code_for(op, c, op.body.replace("{n}", str(c + rng.choice((-1, 1, 2)))))


def sft_example(task, turn: int, cfg: WarmstartConfig, rng: random.Random) -> tuple[str, str, str]:
    """(prompt, target, header) in prompts.py's exact formats; target = code + "\n[DONE]"; header: the
    prompt's start that takes cfg.prompt_weight (the turn-1 prompt; the rest of a turn-2 prompt takes
    cfg.attempt_weight). Turn 1: the misconception where one exists, else the reference. Turn 2
    ("[CORRECT]" ending): previous attempt right -> copy; wrong -> repair with prob. repair_rate, else copy."""
    ref, header = task.reference, build_prompt(task, [])
    if turn == 1:
        return header, f"{misconception(task) or ref}\n{DONE}", header
    prev = previous_attempt(task, cfg, rng)
    target = ref if prev != ref and rng.random() < cfg.repair_rate else prev
    return build_prompt(task, [prev], ending="correct"), f"{target}\n{DONE}", header


def _batch(tokenizer, pairs: list[tuple[str, str, str]], prompt_weight: float, attempt_weight: float = 0.0):
    """Right-padded input ids, attention mask and per-token loss weights for next-token
    prediction: prompt_weight on the header's tokens, attempt_weight on the rest of the prompt,
    1 on target tokens, 0 on padding."""
    import torch  # lazy: torch (see the note at the imports)

    def ids_of(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    rows = [(ids_of(p), ids_of(t), len(ids_of(h))) for p, t, h in pairs]
    width = max(len(p) + len(t) for p, t, _ in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    weights = torch.zeros((len(rows), width))
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for j, (p, t, h) in enumerate(rows):
        ids[j, :len(p) + len(t)] = torch.tensor(p + t)
        weights[j, 1:h] = prompt_weight
        weights[j, h:len(p)] = attempt_weight
        weights[j, len(p):len(p) + len(t)] = 1.0
        mask[j, :len(p) + len(t)] = 1
    return ids, mask, weights


def sft_loss(model, ids, mask, weights):
    """Weighted mean of -log pi(x_t | x_<t) over the batch's tokens."""
    import torch.nn.functional as F  # lazy: torch (see the note at the imports)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none")
    w = weights[:, 1:].reshape(-1)
    return (nll * w).sum() / w.sum()


def warmstart_lr_factor(step: int, cfg: WarmstartConfig) -> float:
    """Multiplier of the warm-start's lr at `step`: a linear warm-up over cfg.warmup steps times a cosine
    over all cfg.steps, floored at 0.05 (unlike train.lr_factor, whose cosine starts after the warm-up
    and decays to 0: the shipped checkpoint was trained with this one)."""
    return min(1.0, (step + 1) / cfg.warmup) * max(0.05, 0.5 * (1 + math.cos(math.pi * step / cfg.steps)))


def build_warmstart(out_dir: str | Path | None = None, seed: int = 0, cfg: WarmstartConfig = WarmstartConfig(),
                    progress: bool = True) -> str:
    """Train the tiny policy by SFT on toy-train tasks (turn-1 and turn-2 batches alternate)
    and save it with save_pretrained (default: the shipped warmstart_path()). Deterministic
    in (seed, cfg) on one machine; returns out_dir."""
    import torch  # lazy: torch (see the note at the imports)
    from tqdm.auto import tqdm  # lazy: tqdm (see the note at the imports)

    from cocos_lib.optim import optimizer_step  # lazy: torch
    out_dir = Path(out_dir or warmstart_path())
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        rng = random.Random(seed)
        tok = char_tokenizer()
        model = tiny_model(tok, cfg, seed)
        n_hard = int(cfg.hard_share * cfg.n_train_tasks)
        tasks = (toy_tasks("train", n=cfg.n_train_tasks - n_hard, seed=seed)
                 + toy_tasks("train", n=n_hard, seed=seed, difficulty=2))
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.98))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, functools.partial(warmstart_lr_factor, cfg=cfg))
        model.train()
        bar = tqdm(range(cfg.steps), desc="warm-start SFT", disable=not progress)
        t0 = time.time()
        for step in bar:
            turn = 2 if step % cfg.turn2_every == cfg.turn2_every - 1 else 1
            pairs = [sft_example(rng.choice(tasks), turn, cfg, rng) for _ in range(cfg.batch_size)]
            loss = sft_loss(model, *_batch(tok, pairs, cfg.prompt_weight, cfg.attempt_weight))
            loss.backward()
            optimizer_step(opt, sched, max_norm=1.0)
            opt.zero_grad(set_to_none=True)
            bar.set_postfix(loss=f"{loss.item():.3f}", turn=turn)
        model.eval()
        out_dir.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out_dir)
        tok.save_pretrained(out_dir)
        portable_tokenizer_config(out_dir)
        if progress:
            print(f"warm-start saved to {out_dir} ({time.time() - t0:.0f}s)")
    finally:
        torch.set_num_threads(threads)
    return str(out_dir)


def portable_tokenizer_config(folder: str | Path) -> Path:
    """Rewrite folder/tokenizer_config.json so that every transformers pyproject allows reads it: transformers 5
    saves `tokenizer_class: TokenizersBackend` (no such class before 5.0) and `extra_special_tokens` as a list
    (4.x wants a dict there); `PreTrainedTokenizerFast` with `additional_special_tokens` loads the same tokenizer
    (ids, special ids, decode) under 4.56 and 5.x alike. Returns the file."""
    path = Path(folder) / "tokenizer_config.json"
    cfg = json.loads(path.read_text())
    if cfg.get("tokenizer_class") == "TokenizersBackend":
        cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    extra = cfg.get("extra_special_tokens")
    if isinstance(extra, list):
        cfg.pop("extra_special_tokens")
        cfg["additional_special_tokens"] = extra
    path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cocos_lib.toy.warmstart", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build-warmstart", help="rebuild the tiny warm-start checkpoint (deterministic)")
    b.add_argument("--out", default=None, help=f"output dir (default: {warmstart_path()})")
    b.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    build_warmstart(args.out, seed=args.seed)


if __name__ == "__main__":
    main()
