"""Multi-turn rollouts: y_1 ~ pi(.|x_1), then y_t ~ pi(.|x_t(y_{t-1})) for t = 2..T.

For each task (a *group* g) we draw k trajectories (samples s = 0..k-1). Turn 1 is either
sampled once per task and shared by its k members (`share_first_turn`, as in the released
code: then r_1 is equal inside a group and cancels in the RLOO advantage) or sampled k times
independently. Every turn's code is run against the task's K unit tests through the
executor, once per turn for the whole batch, and scored r_t = REWARDS[cfg.reward](report);
a trajectory's return is R = accumulated_reward([r_1..r_T], gamma).
Greedy evaluation: k=1, sampling=SamplingConfig(greedy=True).

One turn of a batch is one pipeline, `run_turn` (also used by baselines.self_refine): prompt texts
-> encode (left-truncated) -> generate -> decode -> extract the code -> execute -> reward.
`cfg.prompt_format` picks the prompts: "completion" (the paper's MBPP-style text, default) or
"chat" (the tokenizer's chat template, assistant turn pre-filled with "```python\n", stop "```";
see cocos_lib.prompts).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from tqdm.auto import tqdm

from cocos_lib.executor import Executor, Job, TestReport, untrusted_share
from cocos_lib.generation.dispatch import generate
from cocos_lib.prompts import EXTRACTIONS, MARKERS, PROMPT_FORMATS, answer_stop, extract_answer, render_prompt
from cocos_lib.rewards import REWARDS
from cocos_lib.sampling import BACKENDS, SamplingConfig
from cocos_lib.tasks import Task
from cocos_lib.trajectory import Trajectory, Turn


@dataclass(frozen=True)
class RolloutConfig:
    """turns T, samples per task k, shared turn 1, reward name, sampling, prompt options.

    max_prompt_tokens: prompts longer than this keep only their LAST max_prompt_tokens
    tokens (left truncation: the few-shot block and the task text go first, the code to
    correct and the final marker stay; a leading BOS is kept). None: the model's context
    minus max_new_tokens.
    """
    turns: int = 2
    k: int = 2
    share_first_turn: bool = True
    reward: str = "progressive"
    sampling: SamplingConfig = SamplingConfig()
    fewshot: str = ""
    ending: str = "correct"
    backend: str = "hf"
    max_prompt_tokens: int | None = None
    exec_timeout_s: float = 3.0          # wall-clock seconds per unit test (executor.Job.timeout_s)
    prompt_format: str = "completion"   # "completion" (paper) | "chat" (instruct models)
    extraction: str = "lenient"         # prompts.EXTRACTIONS: "lenient" (extract_code) | "release" (code_process)

    @property
    def answer_sampling(self) -> SamplingConfig:
        """`sampling` with the format's stop string ("[DONE]" becomes "```" in the chat format)."""
        return dataclasses.replace(self.sampling, stop=answer_stop(self.prompt_format, self.sampling.stop))

    def __post_init__(self):
        checks = [(self.turns >= 1, "turns", "must be >= 1"), (self.k >= 1, "k", "must be >= 1"),
                  (self.reward in REWARDS, "reward", f"expected one of {sorted(REWARDS)}"),
                  (self.ending in ("correct", "begin"), "ending", "expected 'correct' or 'begin'"),
                  (self.backend in BACKENDS, "backend", f"expected one of {list(BACKENDS)}"),
                  (self.max_prompt_tokens is None or self.max_prompt_tokens >= 1, "max_prompt_tokens",
                   "must be >= 1 or None"), (self.exec_timeout_s > 0, "exec_timeout_s", "must be > 0"),
                  (self.prompt_format in PROMPT_FORMATS, "prompt_format", f"expected one of {list(PROMPT_FORMATS)}"),
                  (self.extraction in EXTRACTIONS, "extraction", f"expected one of {list(EXTRACTIONS)}"),
                  (self.prompt_format != "chat" or not self.fewshot, "fewshot",
                   "the chat format takes no few-shot block (an instruct model answers from the task)")]
        for ok, name, what in checks:
            if not ok:
                raise ValueError(f"RolloutConfig.{name}={getattr(self, name)!r}: {what}")


def prompt_budget(policy, cfg: RolloutConfig) -> int | None:
    """Most prompt tokens kept: cfg.max_prompt_tokens, else context - max_new_tokens."""
    if cfg.max_prompt_tokens is not None:
        return cfg.max_prompt_tokens
    ctx = getattr(getattr(policy.model, "config", None), "max_position_embeddings", None)
    if isinstance(ctx, int) and ctx > cfg.sampling.max_new_tokens:
        return ctx - cfg.sampling.max_new_tokens
    return None


def encode_prompts(tokenizer, texts: Sequence[str], max_tokens: int | None) -> list[list[int]]:
    """Token ids of each prompt (with the tokenizer's BOS etc.), LEFT-truncated to max_tokens
    (a leading BOS is kept, the tokens after it are dropped)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    out = []
    for x in tokenizer(list(texts), add_special_tokens=True)["input_ids"]:
        x = list(x)
        if max_tokens and len(x) > max_tokens:
            keep_bos = bos is not None and x[0] == bos and max_tokens > 1
            x = x[:1] + x[len(x) - max_tokens + 1:] if keep_bos else x[-max_tokens:]
        out.append(x)
    return out


def decode_completion(policy, ids: Sequence[int]) -> str:
    """Completion text; a final EOS is dropped unless it is a prompt marker (a model may list
    [DONE] among its EOS ids); other special tokens are kept."""
    tok = policy.tokenizer
    if ids and ids[-1] in set(policy.eos_token_ids) and tok.decode(ids[-1:]) not in MARKERS:
        ids = ids[:-1]
    return tok.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)


def execute(executor: Executor, tasks: Sequence[Task], codes: Sequence[str], timeout_s: float) -> list[TestReport]:
    """One executor.run_many call for a whole turn; identical (task, code) pairs run once."""
    key_of = [(id(t), c) for t, c in zip(tasks, codes)]
    unique: dict = {}
    for key, task, code in zip(key_of, tasks, codes):
        unique.setdefault(key, Job(code=code, tests=tuple(task.tests), setup=task.setup, timeout_s=timeout_s,
                                   entry_point=getattr(task, "entry_point", None)))
    reports = dict(zip(unique, executor.run_many(list(unique.values()), progress=False)))
    return [reports[key] for key in key_of]


def turn_seed(seed: int, t: int) -> int:
    return (seed * 1_000_003 + t) % (2 ** 63)


@dataclass(frozen=True)
class TextFormat:
    """How a turn's state becomes token ids and a completion becomes code: the four text steps of a turn.
    REPO_FORMAT is this library's (render_prompt, left-truncating encode_prompts, decode_completion, extract_answer
    by cfg); the authors' evaluation pipeline passes its own (`release.pipeline.release_format()`) to the same rollout.
        prompt(policy, task, codes so far, cfg) -> str      encode(policy, texts, cfg) -> token ids
        decode(policy, completion ids) -> str                extract(text, task, cfg) -> code
    """
    prompt: Callable[..., str]
    encode: Callable[..., list[list[int]]]
    decode: Callable[..., str]
    extract: Callable[..., str]


REPO_FORMAT = TextFormat(
    prompt=lambda policy, task, codes, cfg: render_prompt(policy.tokenizer, task, codes, cfg.prompt_format, cfg.fewshot,
                                                          cfg.ending),
    encode=lambda policy, texts, cfg: encode_prompts(policy.tokenizer, texts, prompt_budget(policy, cfg)),
    decode=decode_completion,
    extract=lambda text, task, cfg: extract_answer(text, cfg.prompt_format, cfg.extraction))


def generate_texts(policy, texts: Sequence[str], cfg: RolloutConfig, sampling: SamplingConfig, seed: int,
                   stats: dict | None = None, text: TextFormat = REPO_FORMAT
                   ) -> tuple[list[list[int]], list[list[int]], list[str]]:
    """Prompt texts -> (prompt ids, completion ids, completion texts): encode, generate, decode."""
    prompt_ids = text.encode(policy, texts, cfg)
    t0 = time.perf_counter()
    completions = generate(policy, prompt_ids, sampling, seed=seed, backend=cfg.backend)
    if stats is not None:
        stats["sec_generate"] = stats.get("sec_generate", 0.0) + time.perf_counter() - t0
        stats["tokens"] = stats.get("tokens", 0) + sum(len(c) for c in completions)
    return prompt_ids, completions, [text.decode(policy, c) for c in completions]


def run_turn(policy, tasks: Sequence[Task], texts: Sequence[str], cfg: RolloutConfig, executor: Executor, seed: int,
             stats: dict | None = None, text: TextFormat = REPO_FORMAT) -> list[Turn]:
    """One turn for a batch: generate_texts, extract each answer's code, execute, r_t = reward."""
    prompt_ids, completions, outs = generate_texts(policy, texts, cfg, cfg.answer_sampling, seed, stats, text)
    codes = [text.extract(o, task, cfg) for o, task in zip(outs, tasks)]
    t0 = time.perf_counter()
    reports = execute(executor, tasks, codes, cfg.exec_timeout_s)
    if stats is not None:
        stats["sec_execute"] = stats.get("sec_execute", 0.0) + time.perf_counter() - t0
    reward_fn = REWARDS[cfg.reward]
    return [Turn(p, c, o, code, rep, float(reward_fn(rep)))
            for p, c, o, code, rep in zip(prompt_ids, completions, outs, codes, reports)]


def rollout(policy, tasks: Sequence[Task], cfg: RolloutConfig, executor: Executor, seed: int = 0,
            progress: bool = False, stats: dict | None = None, text: TextFormat = REPO_FORMAT) -> list[Trajectory]:
    """len(tasks) * k trajectories ordered by (group, sample); see the module docstring.

    Turn t >= 2 prompt = text.prompt(task, codes of turns < t) (REPO_FORMAT: render_prompt, few-shot block on
    turn 1 only). stats, if given, receives sec_generate, sec_execute, tokens (generated) and untrusted_tests: the
    share of the test outcomes behind the rewards that the executor could not decide outside the candidate
    (TestReport.trusted False: such a pass may be forged; the reward counts it all the same).
    """
    k = cfg.k
    if not tasks:
        return []
    trajs = [Trajectory(task=task, turns=[], group=g, sample=s) for g, task in enumerate(tasks) for s in range(k)]
    acc = {"sec_generate": 0.0, "sec_execute": 0.0, "tokens": 0}
    executed = []  # every turn's reports: the test outcomes behind the rewards
    for t in tqdm(range(1, cfg.turns + 1), desc="rollout turns", disable=not progress or not trajs):
        shared = t == 1 and cfg.share_first_turn and k > 1
        sources = trajs[::k] if shared else trajs
        texts = [text.prompt(policy, tr.task, [u.code for u in tr.turns], cfg) for tr in sources]
        new = run_turn(policy, [tr.task for tr in sources], texts, cfg, executor, turn_seed(seed, t), acc, text)
        executed += [turn.report for turn in new]
        for i, tr in enumerate(trajs):
            turn = new[i // k] if shared else new[i]
            tr.turns.append(dataclasses.replace(turn, prompt_ids=list(turn.prompt_ids),
                                                completion_ids=list(turn.completion_ids)))
    if stats is not None:
        stats.update(acc, untrusted_tests=untrusted_share(executed))
    return trajs
