"""load_policy on tiny local models: dtype, pad handling, LoRA reference, errors."""
import json
import time
from types import SimpleNamespace

import pytest
import torch

from cocos_lib import hardware, models, unload
from cocos_lib.toy import tiny_models
from cocos_lib.prompts import MARKERS
from cocos_lib.models import LoraSpec, ModelNotFoundError, frozen_reference, load_policy


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits


def test_tiny_policy_roundtrip(tiny_policy_dir, tiny_policy):
    tok, model = tiny_policy.tokenizer, tiny_policy.model
    assert tok.padding_side == "left"
    # no pad token in the saved tokenizer -> pad = eos, embeddings not resized
    assert tok.pad_token == tok.eos_token == "<|endoftext|>"
    assert model.config.pad_token_id == tok.eos_token_id == 0
    assert model.get_input_embeddings().weight.shape[0] == len(tok) == 387
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 64
    assert model.dtype == torch.float32 and tiny_policy.device.type == "cpu"
    assert tiny_policy.eos_token_ids == [0]
    # the markers are single, decodable tokens
    for m in MARKERS:
        ids = tok(m, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and tok.decode(ids) == m
    # a second load gives identical weights (saved, not re-initialised)
    again = load_policy(tiny_policy_dir, dtype="fp32")
    ids = tok("def f(x):\n    return x")["input_ids"]
    assert torch.equal(_logits(model, ids), _logits(again.model, ids))


def test_make_tiny_policy_is_seeded(tmp_path):
    rng = torch.get_rng_state()
    a = load_policy(tiny_models.make_tiny_policy(tmp_path / "a", seed=3, num_hidden_layers=1))
    b = load_policy(tiny_models.make_tiny_policy(tmp_path / "b", seed=3, num_hidden_layers=1))
    assert torch.equal(rng, torch.get_rng_state())  # caller's RNG untouched
    ids = [5, 6, 7]
    assert torch.equal(_logits(a.model, ids), _logits(b.model, ids))
    assert a.model.config.num_hidden_layers == 1


def test_existing_pad_token_is_kept(tiny_policy_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny_policy_dir)
    tok.pad_token = "[CORRECT]"  # an existing token, like Qwen2.5's own pad token
    AutoModelForCausalLM.from_pretrained(tiny_policy_dir).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    p = load_policy(tmp_path)
    assert p.tokenizer.pad_token == "[CORRECT]" and p.tokenizer.pad_token_id == 386
    assert p.model.config.pad_token_id == 386 and p.tokenizer.eos_token_id == 0
    assert len(p.tokenizer) == 387


def test_no_pad_and_no_eos_is_an_error():
    tok = tiny_models.train_tiny_tokenizer(vocab_size=300)
    tok.eos_token = None
    with pytest.raises(ValueError, match="neither pad nor eos"):
        models.setup_tokenizer(tok)


def test_resolve_dtype(monkeypatch, tmp_path):
    plain, amx = tmp_path / "plain", tmp_path / "amx"
    plain.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n")
    amx.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile\n")
    assert models.resolve_dtype("auto", "cpu", cpuinfo=plain) == torch.float32
    assert models.resolve_dtype("auto", "cpu", cpuinfo=amx) == torch.bfloat16
    assert models.resolve_dtype("auto", "cpu", cpuinfo=tmp_path / "absent") == torch.float32   # e.g. macOS
    assert models.describe_dtype("auto", "cpu", cpuinfo=amx) == "dtype auto -> bfloat16 (the CPU has amx_bf16, avx512_bf16)"
    assert models.describe_dtype("auto", "cpu", cpuinfo=plain) == (
        "dtype auto -> float32 (the CPU has no native bf16 (no amx_bf16/avx512_bf16))")
    assert models.describe_dtype("fp32", "cpu", cpuinfo=amx) == "dtype float32 (asked for)"
    assert models.resolve_dtype("bf16", "cpu") == torch.bfloat16
    assert models.resolve_dtype(torch.float16, "cpu") == torch.float16
    fake_cuda(monkeypatch, (8, 0))
    assert models.resolve_dtype("auto", "cuda") == torch.bfloat16
    fake_cuda(monkeypatch, (7, 5))  # e.g. a T4
    assert models.resolve_dtype("auto", "cuda:0") == torch.float16
    with pytest.raises(ValueError, match="dtype 'fp8'"):
        models.resolve_dtype("fp8", "cpu")


def fake_cuda(monkeypatch, capability, name="GPU"):
    """torch.cuda as on a GPU of that compute capability; is_bf16_supported() says True as torch does on a
    T4 (it counts emulation), so only a decision from the capability gets a T4 right."""
    props = SimpleNamespace(name=name, major=capability[0], minor=capability[1], total_memory=16 * 1024 ** 3)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i=0: props)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)


@pytest.mark.parametrize("name, capability, expected", [("Tesla T4", (7, 5), torch.float16),
                                                        ("NVIDIA A100", (8, 0), torch.bfloat16),
                                                        ("NVIDIA L4", (8, 9), torch.bfloat16)])
def test_auto_dtype_on_a_t4_is_fp16_never_emulated_bf16(monkeypatch, name, capability, expected):
    """One decision: resolve_dtype("auto") on CUDA is hardware.precision of the device (a T4: fp16)."""
    fake_cuda(monkeypatch, capability, name)
    assert models.resolve_dtype("auto", "cuda") == expected
    assert models.resolve_dtype("auto", "cuda:0") == expected
    hw = hardware.detect()
    assert hw.capability == capability and models.resolve_dtype("auto", "cuda") == models.resolve_dtype(
        hardware.precision(hw).dtype, "cpu")


def test_a_saved_and_reloaded_policy_trains_the_pad_row_as_the_fresh_one(tiny_policy_dir, tmp_path):
    """Saving writes pad_token_id (= EOS here) into config.json; on reload the input embedding must not
    turn it into a padding_idx, or the pad/EOS row gets no gradient from its lookups (resume not exact)."""
    fresh = load_policy(tiny_policy_dir, dtype="fp32", device="cpu")
    resumed = load_policy(fresh.save(tmp_path / "saved"), dtype="fp32", device="cpu")
    assert json.loads((tmp_path / "saved" / "config.json").read_text())["pad_token_id"] == fresh.tokenizer.pad_token_id
    pad = fresh.tokenizer.pad_token_id
    grads = []
    for policy in (fresh, resumed):
        emb = policy.model.get_input_embeddings()
        assert emb.padding_idx is None
        emb(torch.tensor([[pad, 3]])).sum().backward()
        grads.append(emb.weight.grad[pad].clone())
    assert torch.equal(grads[0], grads[1]) and grads[1].abs().sum() > 0


def test_load_in_bf16(tiny_policy_dir):
    p = load_policy(tiny_policy_dir, dtype="bf16")
    assert p.model.dtype == torch.bfloat16


def test_missing_models_fail_fast_with_one_line(tmp_path):
    t = time.perf_counter()
    for name in [str(tmp_path / "nope"), "./no/such/dir", "no-such-org/no-such-model-xyz"]:
        with pytest.raises(ModelNotFoundError) as e:
            load_policy(name)
        assert name in str(e.value) and "\n" not in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_policy(tmp_path / "empty")
    assert time.perf_counter() - t < 5


def test_tiny_warmstart_resolves_through_toy(monkeypatch, tiny_policy_dir, tmp_path):
    monkeypatch.setattr(models.toy, "warmstart_path", lambda: tiny_policy_dir)
    p = load_policy("tiny-warmstart")
    assert p.name == "tiny-warmstart" and len(p.tokenizer) == 387
    monkeypatch.setattr(models.toy, "warmstart_path", lambda: tmp_path / "missing")
    with pytest.raises(ModelNotFoundError, match="build-warmstart"):
        load_policy("tiny-warmstart")


def test_lora_reference_gives_base_logits(tiny_policy_dir, tiny_policy, tmp_path):
    spec = LoraSpec(r=4, alpha=8, dropout=0.0, target_modules=("q_proj", "v_proj"))
    p = load_policy(tiny_policy_dir, dtype="fp32", lora=spec)
    assert p.is_lora and not tiny_policy.is_lora and frozen_reference(p) is None
    trainable = {n for n, w in p.model.named_parameters() if w.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    # 2 layers x (q, v) x (A, B)
    assert len(trainable) == 8
    torch.manual_seed(0)
    for n, w in p.model.named_parameters():
        if "lora_B" in n:  # B starts at 0 (adapter = identity); make it act
            w.data.normal_(0, 0.5)
    ids = [10, 20, 30, 40]
    base = _logits(tiny_policy.model, ids)
    assert not torch.allclose(_logits(p.model, ids), base, atol=1e-4)
    with p.reference():
        assert torch.allclose(_logits(p.model, ids), base, atol=1e-6)
    assert not torch.allclose(_logits(p.model, ids), base, atol=1e-4)  # adapter back on
    # a saved adapter dir loads on its base model and gives the same logits
    adapted = _logits(p.model, ids)
    p.save(tmp_path / "adapter")
    q = load_policy(tmp_path / "adapter", dtype="fp32")
    assert q.is_lora and torch.allclose(_logits(q.model, ids), adapted, atol=1e-6)
    assert any(w.requires_grad for n, w in q.model.named_parameters() if "lora_" in n)  # resumable
    with pytest.raises(ValueError, match="saved LoRA adapter"):
        load_policy(tmp_path / "adapter", lora=spec)


def test_frozen_reference_is_a_detached_copy(tiny_policy_dir):
    p = load_policy(tiny_policy_dir, dtype="fp32", gradient_checkpointing=True)
    assert getattr(p.model, "is_activation_checkpointing", None) or p.model.is_gradient_checkpointing
    ref = frozen_reference(p)
    assert not ref.training and not any(w.requires_grad for w in ref.parameters())
    ids = [1, 2, 3]
    before = _logits(ref, ids)
    assert torch.equal(before, _logits(p.model.eval(), ids))
    with torch.no_grad():
        p.model.get_input_embeddings().weight.add_(1.0)
    assert torch.equal(_logits(ref, ids), before)
    with p.reference():  # full fine-tuning: a no-op context
        assert not torch.equal(_logits(p.model, ids), before)


@pytest.fixture
def empty_hub_cache(monkeypatch, tmp_path):
    """An empty HF cache, so what this machine has cached does not matter."""
    import huggingface_hub.constants as C
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(C, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.mark.parametrize("offline", [True, False])
def test_uncached_hub_name_fails_fast_offline_or_unreachable(monkeypatch, empty_hub_cache, offline):
    """No network here: a hub name not in the cache fails in one line within 5 s (not after
    huggingface_hub's ~23 s of retries), naming the model and the fix."""
    name = "cocos-test/not-cached-model"
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setattr(models, "hub_reachable", lambda *a: pytest.fail("probed while offline"))
    t = time.perf_counter()
    with pytest.raises(ModelNotFoundError) as e:
        load_policy(name)
    assert time.perf_counter() - t < 5
    msg = str(e.value)
    assert msg.startswith(f"model '{name}': ") and "\n" not in msg and "local model directory" in msg
    if offline:
        assert "HF_HUB_OFFLINE" in msg
    else:  # this machine has no route to the hub (any network would answer 404 for this name)
        assert "unreachable" in msg or "not found locally or on the hub" in msg


def test_unreachable_endpoint_is_one_quick_probe(monkeypatch, empty_hub_cache):
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: refused at once
    assert not models.hub_reachable(timeout_s=2.0)
    t = time.perf_counter()
    with pytest.raises(ModelNotFoundError, match=r"^model 'org/m': not in the local Hugging Face cache "
                                                 r"and the hub is unreachable \(connect"):
        models.resolve_model("org/m")
    assert time.perf_counter() - t < 3


def _fake_cache(cache, name, src, files):
    """A hub-cache layout: models--org--name/refs/main -> sha, snapshots/sha/<files from src>."""
    import shutil
    repo = cache / ("models--" + name.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    for f in files:
        shutil.copy(f"{src}/{f}", snap / f)
    return snap


def test_cached_hub_model_loads_without_network(monkeypatch, empty_hub_cache, tiny_policy_dir, tiny_policy):
    """A complete cached snapshot is used as a local dir: no probe, works with the env unset."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(models, "hub_reachable", lambda *a: pytest.fail("probed a cached model"))
    files = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    snap = _fake_cache(empty_hub_cache, "cocos/tiny", tiny_policy_dir, files)
    assert models.cached_snapshot("cocos/tiny") == str(snap)
    p = load_policy("cocos/tiny", dtype="fp32", device="cpu")
    assert p.name == "cocos/tiny"
    assert torch.equal(_logits(p.model, [5, 6, 7]), _logits(tiny_policy.model, [5, 6, 7]))
    # config only (weights never downloaded): not a usable snapshot -> offline error, not a crash
    _fake_cache(empty_hub_cache, "cocos/partial", tiny_policy_dir, ["config.json", "tokenizer.json"])
    assert models.cached_snapshot("cocos/partial") is None
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="cocos/partial.*TRANSFORMERS_OFFLINE"):
        load_policy("cocos/partial")


def test_released_pad_tokens(tiny_policy_dir, tmp_path):
    """#15: pad_token="released" is the release's per family: Llama-3.2's <|finetune_right_pad_id|> (not its
    EOS) when the vocabulary has it, else <|endoftext|> (Qwen2.5: its EOS); an unknown token is one line."""
    from transformers import AutoModelForCausalLM, LlamaConfig
    tok = tiny_models.train_tiny_tokenizer(vocab_size=300)
    tok.add_tokens(["<|finetune_right_pad_id|>"], special_tokens=True)  # as in Llama-3's vocabulary
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, eos_token_id=tok.eos_token_id)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path / "llama")
    tok.save_pretrained(tmp_path / "llama")
    llama = load_policy(tmp_path / "llama", pad_token="released")
    pad = llama.tokenizer.convert_tokens_to_ids("<|finetune_right_pad_id|>")
    assert llama.tokenizer.pad_token_id == llama.model.config.pad_token_id == pad != llama.tokenizer.eos_token_id
    assert load_policy(tmp_path / "llama").tokenizer.pad_token_id == llama.tokenizer.eos_token_id  # auto: EOS
    qwen_like = load_policy(tiny_policy_dir, pad_token="released")
    assert qwen_like.tokenizer.pad_token == "<|endoftext|>" == qwen_like.tokenizer.eos_token
    assert load_policy(tiny_policy_dir, pad_token="[CORRECT]").tokenizer.pad_token_id == 386
    with pytest.raises(ValueError, match=r"pad_token '<pad>' is not in the vocabulary"):
        load_policy(tiny_policy_dir, pad_token="<pad>")


def test_mode_sets_and_restores_train_or_eval(tiny_policy_dir):
    from cocos_lib.generation.dispatch import generate
    from cocos_lib.sampling import SamplingConfig
    from cocos_lib.modes import mode
    p = load_policy(tiny_policy_dir, dtype="fp32", device="cpu")
    for start in (True, False):
        p.model.train(start)
        with mode(p.model, not start) as m:
            assert m is p.model and all(x.training is (not start) for x in p.model.modules())
        assert all(x.training is start for x in p.model.modules())
        generate(p, [[5, 6]], SamplingConfig(max_new_tokens=2, greedy=True, stop=None))  # eval inside, restored
        assert p.model.training is start


def test_free_models_gives_back_weights_masters_and_caches(tiny_policy_dir, monkeypatch):
    """unload.free_models, as notebook 03 frees its walkthrough models: after it nothing of them holds storage, even with names still
    bound (as IPython's history would keep them), and the CUDA cache is emptied when there is CUDA."""
    import gc
    import weakref
    from cocos_lib.optim import make_optimizer
    policy = load_policy(tiny_policy_dir, dtype="bf16", device="cpu")
    ref = frozen_reference(policy)
    opt = make_optimizer(policy.model, lr=1e-3)                      # MasterWeightAdamW: hooks + fp32 masters
    policy.model(input_ids=torch.tensor([[1, 2, 3]])).logits.float().sum().backward()
    opt.step()
    policy.decode_cache.static_caches[4, 256] = object()
    masters = [weakref.ref(w32) for _, w32 in opt.pairs]
    params = list(policy.model.parameters())
    emptied = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    unload.free_models(policy, ref, optimizers=[opt])
    gc.collect()
    assert all(p.device.type == "meta" for p in policy.model.parameters()) and all(p.grad is None for p in params)
    assert all(p.device.type == "meta" for p in ref.parameters())
    assert all(not p._post_accumulate_grad_hooks for p in params)   # the optimizer's hooks are gone
    assert all(m() is None for m in masters) and not opt.state and policy.decode_cache.static_caches == {}
    assert emptied == [True]


def test_a_saved_adapter_names_a_registry_base_by_its_short_name(tiny_policy_dir, tmp_path, monkeypatch):
    """peft writes the base's resolved folder (this machine's cache) into adapter_config.json; for a registry
    model the short name is written instead, so a committed adapter loads on another machine."""
    from cocos_lib import registry_models
    monkeypatch.setitem(registry_models.REGISTRY, "tiny-registry", registry_models.REGISTRY[next(iter(registry_models.REGISTRY))])
    monkeypatch.setattr(registry_models, "fetched_dir", lambda name: tiny_policy_dir if name == "tiny-registry" else None)
    p = load_policy("tiny-registry", dtype="fp32", lora=LoraSpec(r=2, alpha=4))
    (tmp_path / "a").mkdir()
    p.save(tmp_path / "a")
    (tmp_path / "a" / "tokenizer_config.json").unlink()        # the tokenizer then comes from the base
    assert json.loads((tmp_path / "a" / "adapter_config.json").read_text())["base_model_name_or_path"] == "tiny-registry"
    q = load_policy(tmp_path / "a", dtype="fp32")
    assert q.is_lora and q.base == "tiny-registry" and q.tokenizer.eos_token_id == p.tokenizer.eos_token_id


def test_reference_keeps_every_submodule_mode(tiny_policy_dir):
    """pi_ref (adapter disabled) leaves each submodule's train/eval flag as it was: peft 0.22's disable_adapter
    resets them, which switched the dropout that an RL step had turned off back on."""
    p = load_policy(tiny_policy_dir, dtype="fp32", lora=LoraSpec(r=2, alpha=4, dropout=0.5))
    p.model.train()
    drops = [m for m in p.model.modules() if isinstance(m, torch.nn.Dropout)]
    for m in drops:
        m.training = False
    with p.reference():
        pass
    assert drops and not any(m.training for m in drops) and p.model.training
