"""One profile table (config.PROFILES): the memory plans and the notebook profiles agree with it, and the
dtype names of a run are the ones memory and models know."""
import pytest

from cocos_lib import config
from cocos_lib.notebook import memory
from cocos_lib.notebook import profile as notebook
from cocos_lib.notebook import runtime


@pytest.mark.parametrize("name", sorted(memory.PLANS))
def test_memory_plans_use_their_training_profile(name):
    profile = memory.PLANS[name]["profile"]
    cfg = config.make_config(profile)
    model, mem = memory.plan_config(name)
    assert model == memory.PLANS[name].get("model", cfg.model)
    assert (mem.dtype, mem.lora_r, mem.micro_batch, mem.gen_batch, mem.new_tokens, mem.gradient_checkpointing) == (
        cfg.dtype, cfg.lora_r, cfg.micro_batch, cfg.gen_batch_size, cfg.max_new_tokens, cfg.gradient_checkpointing)
    assert memory.plan(name)["model"] == model


@pytest.mark.parametrize("name", sorted(notebook.NOTEBOOK_PROFILES))
def test_notebook_profiles_prompt_the_training_profiles_policy(name):
    cfg, nb = config.make_config(name), notebook.notebook_profile(name)
    assert (nb.model, nb.fewshot, nb.ending, nb.prompt_format) == (cfg.model, cfg.fewshot, cfg.ending, cfg.prompt_format)


def test_every_profile_name_is_a_training_profile():
    assert set(runtime.profile_names()) <= set(config.PROFILES)
    assert set(runtime.gpu_profiles()) <= set(config.PROFILES)


def test_dtype_names_agree():
    from cocos_lib.models import resolve_dtype
    names = set(config.DTYPES) - {"auto"}
    assert names == set(memory.DTYPE_BYTES)
    assert {resolve_dtype(n, "cpu").itemsize for n in names} == {2, 4}
    assert all(resolve_dtype(n, "cpu").itemsize == memory.DTYPE_BYTES[n] for n in names)


def test_set_overrides_parse_once_for_every_cli():
    """`--set KEY=VALUE` (train and boost CLIs): values stay strings for make_config to coerce, spaces trimmed,
    the first item without '=' named in a one-line ConfigError."""
    from cocos_lib.config import ConfigError, make_config, parse_overrides
    assert parse_overrides(["lr = 1e-3", "k=4", "model=a=b"]) == {"lr": "1e-3", "k": "4", "model": "a=b"}
    assert make_config("tiny", **parse_overrides(["k=4"])).k == 4
    with pytest.raises(ConfigError, match=r"--set 'lr': expected KEY=VALUE"):
        parse_overrides(["k=4", "lr", "beta"])
