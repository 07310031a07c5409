"""Running the released evaluation: load a released model the way the authors' `test.py` does, and
generate, extract and test its turns in the release's format (`cocos_lib.release.authors`).

    policy = load("Jay-Cho/CoCoS-Qwen2.5-1.5B")                       # pad token of its family set
    trajs = rollout(policy, tasks, turns=4, sampling=sampling(), executor=ex, fewshot="")

What matches the release: greedy decoding, 512 new tokens, stop at EOS; prompts cut to their first
8,192 tokens; the family's pad token and the embeddings resized to the tokenizer; decoding with
special tokens skipped and tokenization spaces cleaned up; the release's extraction.
`sampling(stop_at_done=True)` also stops a row at its first [DONE]: the extracted code is the same
(extraction keeps only the text before the first [DONE]), only fewer tokens are generated.
What differs, stated: the repo's executor runs a task's `setup` before the code (MBPP
test_setup_code, HumanEval's imports and helpers), the release runs the bare code; GPUs without
bf16 (a T4) compute in fp16, the release in bf16; the hf backend batches prompts sorted by length
(the release: in file order), so left padding differs.

STAND_INS maps hub names to local model dirs, so that tests (and offline demos) can run the
same path with tiny local models; a stood-in name is never looked up on the hub.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Sequence

from cocos_lib.release import authors as release
from cocos_lib.sampling import SamplingConfig
from cocos_lib.tasks import Task, load_mbpp
from cocos_lib.trajectory import Trajectory

# torch-free at import (evaluate's CLI and notebook 04's plans read this module before any model loads): generation,
# rollout and models are imported inside the functions that run a model.

STAND_INS: dict[str, str] = {}   # hub name -> local model dir (tests); empty in normal use


def source(name: str, stand_ins: dict[str, str] | None = None) -> str:
    """What `load` reads for `name`: its stand-in when one is registered, else the name itself."""
    table = STAND_INS if stand_ins is None else stand_ins
    return str(table.get(str(name), name))


def configure_padding(policy, name: str) -> int | None:
    """The release's pad token for the family of `name` (when the tokenizer has it), set on the
    tokenizer and the model's configs; then the embeddings are resized to len(tokenizer), as the
    release does. Returns the pad id set, or None (no family, or a tokenizer without that token)."""
    fam = release.family(name)
    tok, model = policy.tokenizer, policy.model
    pad_id = None
    if fam is not None:
        token = release.PAD_TOKENS[fam][0]
        found = tok.convert_tokens_to_ids(token)
        if found is not None and (found != tok.unk_token_id or token == tok.unk_token):
            tok.pad_token = token
            pad_id = int(found)
            model.config.pad_token_id = pad_id
            if getattr(model, "generation_config", None) is not None:
                model.generation_config.pad_token_id = pad_id
    if model.get_input_embeddings().weight.shape[0] != len(tok):
        model.resize_token_embeddings(len(tok))
    return pad_id


def load(name: str, dtype: str = "auto", device: str | None = None, stand_ins: dict[str, str] | None = None):
    """models.load_policy of `name` (or its stand-in), then `configure_padding` by the name's family."""
    from cocos_lib.models import load_policy  # lazy: torch (see the note at the imports)
    policy = load_policy(source(name, stand_ins), dtype=dtype, device=device)
    configure_padding(policy, name)
    return policy


def sampling(batch_size: int = release.BATCH_SIZE, stop_at_done: bool = False,
             max_new_tokens: int = release.MAX_NEW_TOKENS):
    """Greedy, one beam, EOS stop, 512 new tokens (optionally also stopping at [DONE])."""
    return SamplingConfig(greedy=True, max_new_tokens=max_new_tokens, batch_size=batch_size,
                          stop=release.DONE if stop_at_done else None)


def encode(tokenizer, texts: Sequence[str], max_tokens: int = release.MAX_PROMPT_TOKENS) -> list[list[int]]:
    """Token ids with the tokenizer's special tokens, cut to max_tokens by the tokenizer's own
    truncation (right side by default: the first tokens are kept, as in the release)."""
    return [list(x) for x in tokenizer(list(texts), truncation=True, max_length=max_tokens)["input_ids"]]


def decode(tokenizer, ids: Sequence[int]) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=True)


def release_format(max_prompt_tokens: int = release.MAX_PROMPT_TOKENS):
    """The release's text steps for `rollout.rollout` (rollout.TextFormat): release.prompt (cfg.fewshot), the
    tokenizer's own right truncation (`encode`), `decode` (special tokens skipped) and release.extract."""
    from cocos_lib.rollout import TextFormat  # lazy: torch (see the note at the imports)
    return TextFormat(prompt=lambda policy, task, codes, cfg: release.prompt(task, codes, cfg.fewshot),
                      encode=lambda policy, texts, cfg: encode(policy.tokenizer, texts, max_prompt_tokens),
                      decode=lambda policy, ids: decode(policy.tokenizer, ids),
                      extract=lambda text, task, cfg: release.extract(text, task))


def released_rollout(policy, tasks: Sequence[Task], turns: int, sampling: SamplingConfig, executor, fewshot: str = "",
                     seed: int = 0, max_prompt_tokens: int = release.MAX_PROMPT_TOKENS, reward: str = "progressive",
                     timeout_s: float = 3.0) -> list[Trajectory]:
    """The released evaluation pipeline through the one rollout path (`rollout.rollout`, k = 1, HF generate) with
    the release's text steps (`release_format`): one greedy trajectory per task (Trajectory, sample 0) in the
    release's format: turn t's prompt is release.prompt(task, codes so far, fewshot); the few-shot block only
    changes MBPP prompts (turn 1, and the [BEGIN] ending after it)."""
    from cocos_lib.rollout import RolloutConfig, rollout  # lazy: torch (see the note at the imports)
    cfg = RolloutConfig(turns=turns, k=1, share_first_turn=False, reward=reward, sampling=sampling, fewshot=fewshot,
                        backend="hf", exec_timeout_s=timeout_s)
    return rollout(policy, tasks, cfg, executor, seed=seed, text=release_format(max_prompt_tokens))


# ------------------------------------------------------------------ what notebook 04 runs

@dataclass(frozen=True)
class Plan:
    """Which released pairs, task sets and turns to evaluate, and how."""
    pairs: tuple[str, ...] = tuple(p.label for p in release.PAIRS)
    task_sets: tuple[str, ...] = ("mbpp-test", "humaneval")
    turns: int = 4
    batch_size: int = release.BATCH_SIZE
    stop_at_done: bool = False
    limit: int | None = None          # only the first `limit` tasks of each set
    sizes: dict = field(default_factory=lambda: {"mbpp-test": 500, "humaneval": 164})

    def runs(self) -> list[tuple[release.Pair, str, str, str]]:
        """(pair, task set, role "base" | "CoCoS", hub name) for every evaluation, base first."""
        return [(release.pair(label), ts, role, name) for label in self.pairs for ts in self.task_sets
                for role, name in (("base", release.pair(label).base), ("CoCoS", release.pair(label).checkpoint))]

    def n_tasks(self, task_set: str) -> int:
        n = self.sizes[task_set]
        return min(n, self.limit) if self.limit else n


PLANS = {
    # one Colab T4: the Qwen pair, 2 turns, batch 32, rows stopped at [DONE] (same codes, fewer tokens)
    "colab": Plan(pairs=("Qwen2.5-1.5B",), turns=2, batch_size=32, stop_at_done=True),
    # a 40-80 GB GPU: the three pairs, 4 turns, the release's batch 8 and its EOS-only stop
    "paper": Plan(),
}


def plan(profile: str, **overrides) -> Plan:
    """The profile's plan (the colab one for any profile without its own), overrides applied (None = keep)."""
    base = PLANS.get(profile, PLANS["colab"])
    values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in overrides.items() if v is not None}
    for label in values.get("pairs", ()):
        release.pair(label)
    return dataclasses.replace(base, **values)


def fewshot_for(name: str, task_set: str, n: int | None = None, path: str | os.PathLike | None = None) -> str:
    """The release's few-shot block for `name` on `task_set`: n solved MBPP prompt-split tasks from
    task_id 2 on (n None: 3 for a released base model, 0 for anything else); "" for a task set
    that is not MBPP (the release's HumanEval prompts have none). `path`: a local MBPP file or
    folder, else the hub."""
    n = (release.FEWSHOT_N if release.is_base(name) else 0) if n is None else n
    if n == 0 or not task_set.startswith("mbpp"):
        return ""
    pool = load_mbpp("prompt", path=path)[1:]
    if not 0 < n <= len(pool):
        raise ValueError(f"release: field 'n': {n} few-shot examples requested, {len(pool)} available")
    return release.fewshot_block(pool[:n])
