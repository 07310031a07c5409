"""Small helpers the numbered notebooks share: profile sizes, run dirs, a live training plot.

    P = notebook_profile(PROFILE, smoke=SMOKE); P.start()   # "tiny" | "colab" | "paper"
    train(P.train_config(), run, callback=LivePlot(["reward_t2"]), progress=P.progress)

One profile table serves every notebook (CPU toy world, one Colab GPU, a 40-80 GB GPU).
Nothing here computes a result: the notebooks call the library (evaluate, train, plots).
"""
from __future__ import annotations

import dataclasses
import io
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from cocos_lib.config import make_config, profile_settings
from cocos_lib.prompts import fewshot_for
from cocos_lib.sampling import SamplingConfig
from cocos_lib.task_sets import load_tasks

# torch-free at import: a notebook picks its profile before anything heavy loads. torch, transformers and the modules
# that import them (rollout, models, train), ipywidgets, IPython and matplotlib are imported where they are used.


def _shared(profile: str) -> dict:
    """What a notebook profile takes from the training profile of its name (config.PROFILES): the policy
    and how it is prompted."""
    train = profile_settings(profile)
    return {key: train[key] for key in ("model", "fewshot", "ending", "prompt_format", "dtype")}


NOTEBOOK_PROFILES: dict[str, dict] = {
    # CPU, offline, minutes: toy tasks, the repo's warm-started character-level policy.
    "tiny": dict(_shared("tiny"), eval_tasks="toy-test", n_eval=200, max_new_tokens=96, batch_size=64, device="cpu",
                 threads=1, train_updates=None, gamma_check_updates=2),
    # CPU, offline after `make setup`: the real Qwen2.5-Coder-0.5B-Instruct, chat prompts, all 164 HumanEval
    # tasks (hours on 2 cores: the notebooks read the committed study in data/results/real unless REAL_RUN).
    "cpu": dict(_shared("cpu"), eval_tasks="humaneval", n_eval=None, max_new_tokens=512, batch_size=16, device="cpu",
                train_updates=None, gamma_check_updates=1),
    # one Colab GPU: Qwen2.5-0.5B base, few-shot turn 1, 100 MBPP test tasks.
    "colab": dict(_shared("colab"), eval_tasks="mbpp-test", n_eval=100, max_new_tokens=512, batch_size=32, device=None,
                  train_updates=None, gamma_check_updates=2),
    # docs/paper.md §4-§6: Qwen2.5-1.5B base, all 500 MBPP test tasks, the released 1500 updates.
    "paper": dict(_shared("paper"), eval_tasks="mbpp-test", n_eval=None, max_new_tokens=512, batch_size=64, device=None,
                  train_updates=None, gamma_check_updates=2),
}
# SMOKE (the notebook tests): same code path, a handful of tasks and updates.
SMOKE = dict(n_eval=6, eval_turns=2, train_updates=2, gamma_check_updates=1,
             train_overrides=dict(prompts_per_update=4, checkpoint_every=1, max_new_tokens=64))


class ProfileError(ValueError):
    """An unknown profile or size name, one line."""


@dataclass(frozen=True)
class NotebookProfile:
    """Sizes of one profile: what notebooks 01 and 04 evaluate, 03 trains and 05 checks live.
    prompt_format: the prompts of evaluation and rollouts ("completion" or "chat")."""
    name: str                             # the profile's name (a key of config.PROFILES)
    model: str                            # the policy: hub name, local dir or "tiny-warmstart"
    eval_tasks: str                       # a name in task_sets.TASK_SETS
    n_eval: int | None                    # tasks evaluated (None: all)
    fewshot: int                          # few-shot examples in turn-1 prompts
    ending: str                           # prompt ending: "correct" or "begin"
    max_new_tokens: int                   # per turn
    batch_size: int                       # prompts generated together
    device: str | None                    # None: cuda if available, else cpu
    train_updates: int | None             # notebook 03's run (None: the train profile's)
    gamma_check_updates: int              # each of notebook 05's three gamma-check runs
    eval_turns: int = 4                   # turns of the multi-turn evaluation
    threads: int | None = None            # torch intra-op threads (None: torch's default)
    smoke: bool = False                   # a smoke run (the tests' papermill runs)
    progress: bool = False                # progress bars (only when a frontend can render them)
    gamma_check_prompts: int = 4          # prompts per update of those runs
    train_overrides: dict = field(default_factory=dict)     # TrainConfig fields on top of the train profile
    prompt_format: str = "completion"  # "chat" for instruct models (cocos_lib.prompts)
    dtype: str = "auto"                   # the policy's weights (models.resolve_dtype): tiny stays fp32

    def start(self) -> None:
        """Set torch's threads (on a small CPU the executor's workers need a core: oversubscribed
        intra-op threads make the tiny model ~5x slower) and, headless, silence load-time bars."""
        import torch  # lazy: see the note at the imports
        from transformers.utils import logging  # lazy: transformers (see the note at the imports)
        torch.set_num_threads(self.threads or torch.get_num_threads())
        if self.progress:
            logging.enable_progress_bar()
        else:
            logging.disable_progress_bar()

    def tasks(self) -> list:
        """The evaluation tasks: the first n_eval of eval_tasks (all when None)."""
        return load_tasks(self.eval_tasks)[:self.n_eval]

    def sampling(self, greedy: bool = True, temperature: float = 0.9):
        """SamplingConfig: greedy (the paper's evaluation) or sampling at `temperature` (training)."""
        return SamplingConfig(greedy=greedy, temperature=temperature, max_new_tokens=self.max_new_tokens,
                              batch_size=self.batch_size)

    def eval_kwargs(self) -> dict:
        """Keyword arguments of cocos_lib.evaluate.evaluate shared by every notebook (greedy)."""
        return dict(sampling=self.sampling(), ending=self.ending, fewshot=fewshot_for(self.eval_tasks, self.fewshot),
                    progress=self.progress, prompt_format=self.prompt_format)

    def rollout_config(self, **fields):
        """cocos_lib.rollout.RolloutConfig with this profile's prompts, sampling at T = 0.9, and `fields`."""
        from cocos_lib.rollout import RolloutConfig  # lazy: torch
        values = dict(sampling=self.sampling(greedy=False), ending=self.ending,
                      fewshot=fewshot_for(self.eval_tasks, self.fewshot), prompt_format=self.prompt_format)
        return RolloutConfig(**{**values, **fields})

    def train_config(self, updates: int | None = None, **overrides):
        """cocos_lib.config.make_config(name) with the profile's model and overrides, then `overrides`."""
        values = {"model": self.model, **self.train_overrides, "updates": updates or self.train_updates, **overrides}
        return make_config(self.name, **{k: v for k, v in values.items() if v is not None})

    def load_policy(self, name_or_path: str | os.PathLike | None = None):
        """cocos_lib.models.load_policy of `name_or_path` (default: the profile's model)."""
        from cocos_lib.models import load_policy  # lazy: torch
        return load_policy(name_or_path or self.model, dtype=self.dtype, device=self.device)


def notebook_profile(profile: str, smoke: bool = False, **overrides) -> NotebookProfile:
    """Sizes of `profile`; smoke=True shrinks them (tests); overrides win (None = keep)."""
    if profile not in NOTEBOOK_PROFILES:
        raise ProfileError(f"PROFILE={profile!r}: expected one of {', '.join(NOTEBOOK_PROFILES)}")
    values = dict(NOTEBOOK_PROFILES[profile], name=profile, smoke=smoke, progress=has_frontend())
    if smoke:
        values.update(SMOKE, train_overrides={**values.get("train_overrides", {}), **SMOKE["train_overrides"]})
    names = {f.name for f in dataclasses.fields(NotebookProfile)}
    for key, value in overrides.items():
        if key not in names:
            raise ProfileError(f"notebook_profile: unknown size {key!r} (expected one of {', '.join(sorted(names))})")
        if value is not None:
            values[key] = value
    return NotebookProfile(**values)


def run_path(run_dir: str | os.PathLike, profile: NotebookProfile, name: str) -> Path:
    """RUN_DIR/<profile>/<name> (a "-smoke" suffix keeps smoke runs apart from real ones)."""
    return Path(run_dir) / profile.name / (f"{name}-smoke" if profile.smoke else name)


def last_checkpoint(run: str | os.PathLike) -> Path | None:
    """The run's checkpoint dir if one exists (train(..., resume=...) continues from it), else None."""
    from cocos_lib.train import ConfigError, find_checkpoint  # lazy: torch
    try:
        return find_checkpoint(run)
    except ConfigError:  # no checkpoint yet
        return None


def final_model(run: str | os.PathLike) -> Path | None:
    """RUN/final (what train() saves at the end: a model or a LoRA adapter) if present, else None."""
    final = Path(run) / "final"
    return final if any((final / f).is_file() for f in ("config.json", "adapter_config.json")) else None


def has_frontend() -> bool:
    """True in an interactive Jupyter / Colab / VS Code kernel (judged by the kernel's parent process);
    False in plain Python, under headless executors (papermill, pytest, `make run`) and when unsure."""
    shell = sys.modules["IPython"].get_ipython() if "IPython" in sys.modules else None
    if shell is None or not hasattr(shell, "kernel"):
        return False
    if "google.colab" in sys.modules:
        return True
    try:
        parent = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    headless = ("papermill", "nbclient", "nbconvert", "pytest", "nbmake", "run_notebooks")
    return not any(w in parent for w in headless) and any(w in parent for w in ("jupyter", "vscode", "spyder"))


class LivePlot:
    """Callback for cocos_lib.train.train: records each update's metrics. With a frontend it redraws
    `keys` against the update in an ipywidgets.Output; headless it prints one line every `every`
    updates (plots.plot_training_curves draws the static figure afterwards)."""

    def __init__(self, keys: Sequence[str], every: int = 1, widgets: bool | None = None, title: str = "training"):
        self.keys, self.every, self.title = list(keys), max(1, every), title
        self.records: list[dict] = []
        self._out = None
        if has_frontend() if widgets is None else widgets:
            import ipywidgets  # lazy: ipywidgets (see the note at the imports)
            from IPython.display import display  # lazy: IPython (see the note at the imports)
            self._out = ipywidgets.Output()
            display(self._out)

    def __call__(self, metrics: dict) -> None:
        self.records.append(dict(metrics))
        if len(self.records) % self.every:
            return
        if self._out is None:
            print(f"update {metrics.get('update', len(self.records)):>5}  "
                  + "  ".join(f"{k} {metrics.get(k, float('nan')):.3f}" for k in self.keys), flush=True)
            return
        from IPython.display import Image, display  # lazy: IPython (see the note at the imports)
        buf = io.BytesIO()
        self.figure().savefig(buf, format="png", dpi=90)
        with self._out:
            self._out.clear_output(wait=True)
            display(Image(data=buf.getvalue()))

    def figure(self):
        """A matplotlib Figure of the recorded `keys` (one line each) against the update."""
        from matplotlib.figure import Figure  # lazy: matplotlib (see the note at the imports)
        ax = Figure(figsize=(6, 3), constrained_layout=True).add_subplot()
        for key in self.keys:
            ax.plot([r.get("update", i + 1) for i, r in enumerate(self.records)],
                    [r.get(key, float("nan")) for r in self.records], marker=".", label=key)
        ax.set(xlabel="update", title=f"{self.title} ({len(self.records)} updates)")
        ax.legend(frameon=False)
        return ax.figure
