"""The "static" backend (cocos_lib/generation/static.py): same greedy tokens as HF generate, exact stop
handling for multi-token stop strings, early exit, compaction, reproducible seeded sampling."""
from types import SimpleNamespace

import pytest
import torch

from cocos_lib.generation import static as fastgen
from cocos_lib.generation import vllm as vllm_backend
from cocos_lib.generation.static import FastGenError, sample_next, static_generate
from cocos_lib.generation.stop_automaton import stop_table


def _cfg(**kw):
    base = dict(max_new_tokens=24, temperature=0.9, top_p=1.0, greedy=True, stop=None, batch_size=64)
    base.update(kw)
    try:
        from cocos_lib.sampling import SamplingConfig
        return SamplingConfig(**base)
    except ImportError:
        return SimpleNamespace(**base)


def _hf_greedy(policy, prompts, max_new):
    """Reference: HF generate, greedy, left padding; completion cut after the first EOS."""
    tok, model = policy.tokenizer, policy.model
    enc = tok.pad({"input_ids": prompts}, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new, do_sample=False,
                             pad_token_id=tok.pad_token_id, eos_token_id=policy.eos_token_ids)
    res = []
    for row in out[:, enc["input_ids"].shape[1]:].tolist():
        cut = next((i + 1 for i, t in enumerate(row) if t in policy.eos_token_ids), len(row))
        res.append(row[:cut])
    return res


PROMPTS = ["def add(a, b):", "[BEGIN]\nprint(", "x", "assert f(3) == 4\nassert f(0) == 1\n[BEGIN]\n"]


def test_stop_table_hand_computed():
    texts = ["[", "DONE", "]", "[DONE]", "x", "\n[", "ONE]", "[[", "D"]
    t = stop_table(texts, "[DONE]")
    assert t.shape == (7, len(texts))
    assert t[0, 0] == 1 and t[1, 1] == 5 and t[5, 2] == 6        # "[" "DONE" "]"
    assert t[0, 3] == 6 and t[3, 3] == 6                           # whole stop in one token
    assert t[3, 4] == 0 and t[0, 4] == 0                           # unrelated token resets
    assert t[2, 5] == 1 and t[1, 0] == 1 and t[0, 7] == 1          # "[" restarts the match
    assert t[2, 6] == 6 and t[1, 6] == 0                           # "[D" + "ONE]" completes
    assert t[1, 8] == 2 and t[6, 4] == 6                           # S is absorbing


@pytest.fixture(scope="module")
def peaky_policy(tmp_path_factory):
    """A tiny policy with large random weights: peaked, position-sensitive logits, so an
    off-by-one position id or a padding leak changes the greedy tokens."""
    from cocos_lib.models import load_policy
    from cocos_lib.toy.tiny_models import make_tiny_policy
    d = make_tiny_policy(tmp_path_factory.mktemp("peaky"), arch="qwen2", seed=5, initializer_range=0.2)
    return load_policy(d, dtype="fp32", device="cpu")


def test_greedy_equals_hf_generate(peaky_policy):
    tiny_policy = peaky_policy
    prompts = [tiny_policy.tokenizer.encode(p) for p in PROMPTS]
    assert len({len(p) for p in prompts}) == len(prompts)          # really left-padded
    ours = static_generate(tiny_policy, prompts, _cfg(max_new_tokens=24))
    assert ours == _hf_greedy(tiny_policy, prompts, 24)
    assert all(1 <= len(o) <= 24 for o in ours)
    # chunking by batch_size and compaction do not change greedy tokens
    assert static_generate(tiny_policy, prompts, _cfg(max_new_tokens=24, batch_size=3), check_every=2,
                           min_batch=1) == ours


def test_greedy_equals_hf_backend(peaky_policy):
    tiny_policy = peaky_policy
    from cocos_lib.generation.dispatch import generate
    prompts = [tiny_policy.tokenizer.encode(p) for p in PROMPTS]
    for stop in (None, "[DONE]"):
        cfg = _cfg(max_new_tokens=20, stop=stop)
        assert generate(tiny_policy, prompts, cfg, backend="static") == generate(tiny_policy, prompts, cfg,
                                                                                  backend="hf")


def test_lora_policy_greedy_equals_hf_backend(tiny_policy_dir):
    """A peft-wrapped policy (LoRA, B initialised non-zero so the adapter matters) goes through
    the same static path and matches the hf backend."""
    from cocos_lib.generation.dispatch import generate
    from cocos_lib.models import LoraSpec, load_policy
    pol = load_policy(tiny_policy_dir, dtype="fp32", device="cpu", lora=LoraSpec(r=4, dropout=0.0))
    torch.manual_seed(0)
    with torch.no_grad():
        for n, p in pol.model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    prompts = [pol.tokenizer.encode(p) for p in PROMPTS]
    cfg = _cfg(max_new_tokens=16, stop="[DONE]")
    ours = generate(pol, prompts, cfg, backend="static")
    assert ours == generate(pol, prompts, cfg, backend="hf")
    with pol.reference():                                   # adapter disabled: pi_ref differs
        assert generate(pol, prompts, cfg, backend="static") != ours


class OlderAPI(torch.nn.Module):
    """The forward signature of transformers 4.56-5.1x (`past_key_values=`, `cache_position=`) around a real
    model; records the cache positions it is handed. Under such a transformers (the oldest pyproject allows,
    run by `make colab-check`) the real model takes both arguments itself (`native`): the older branch runs for
    real. Under a newer one the model counts positions in the cache, so the wrapper hands it `cache=`."""

    def __init__(self, model):
        super().__init__()
        self.inner, self.config, self.seen = model, model.config, []
        self.native = fastgen._cache_api(model) == ("past_key_values", True)

    def get_output_embeddings(self):
        return self.inner.get_output_embeddings()

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache=None,
                cache_position=None, logits_to_keep=0):
        self.seen.append((cache_position.tolist(), int(past_key_values.get_seq_length())))
        kw = dict(past_key_values=past_key_values, cache_position=cache_position) if self.native else dict(
            cache=past_key_values)
        return self.inner(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          use_cache=use_cache, logits_to_keep=logits_to_keep, **kw)


def test_older_forward_api_gets_past_key_values_and_cache_position(peaky_policy):
    prompts = [peaky_policy.tokenizer.encode(p) for p in PROMPTS]
    P = max(len(p) for p in prompts)
    wrapped = SimpleNamespace(model=OlderAPI(peaky_policy.model), tokenizer=peaky_policy.tokenizer,
                              eos_token_ids=peaky_policy.eos_token_ids)
    assert fastgen._cache_api(wrapped.model) == ("past_key_values", True)
    cfg = _cfg(max_new_tokens=6)
    out = static_generate(wrapped, prompts, cfg, compact=False)
    assert out == static_generate(peaky_policy, prompts, cfg) == _hf_greedy(peaky_policy, prompts, 6)
    seen = wrapped.model.seen
    assert seen[0] == (list(range(P)), 0)                               # prefill writes slots 0..P-1
    assert [s for s, _ in seen[1:]] == [[P + i] for i in range(len(seen) - 1)]
    assert all(s == [w] for s, w in seen[1:])                           # = the slot the cache writes next


def test_the_installed_transformers_takes_the_api_fastgen_picks(peaky_policy):
    """_cache_api reads the real model's forward: `cache=` (transformers >= 5.24) or `past_key_values=` +
    `cache_position=` (4.56-5.1x, the older branch that `make colab-check` runs under the oldest version)."""
    import inspect
    import transformers
    params = inspect.signature(peaky_policy.model.forward).parameters
    name, wants_position = fastgen._cache_api(peaky_policy.model)
    assert name in params and wants_position == ("cache_position" in params)
    print(f"transformers {transformers.__version__}: forward API {name}= (cache_position: {wants_position})")


class ScriptedLM(torch.nn.Module):
    """Emits script[b] after prompt b whatever the input; counts decode calls and batch sizes."""

    def __init__(self, prompts, scripts, vocab):
        super().__init__()
        from transformers import LlamaConfig
        self.config = LlamaConfig(vocab_size=vocab, hidden_size=8, intermediate_size=8, num_hidden_layers=1,
                                  num_attention_heads=1, num_key_value_heads=1)
        self.head = torch.nn.Linear(1, vocab, bias=False)
        self.scripts, self.P, self.vocab = scripts, max(len(p) for p in prompts), vocab
        self.calls = []

    def get_output_embeddings(self):
        return self.head

    def forward(self, input_ids, attention_mask, position_ids, cache, use_cache, logits_to_keep=0):
        self.calls.append(input_ids.shape[0])
        if input_ids.shape[1] > 1:                     # prefill: real prompt length of each row
            self.plen = [int(m.sum()) for m in attention_mask[:, : self.P]]
        logits = torch.full((input_ids.shape[0], 1, self.vocab), -1e4)
        for r in range(input_ids.shape[0]):
            o = self._orig[r]                          # original row (rows move when compacted)
            k = int(position_ids[r, -1]) + 1 - self.plen[o]
            logits[r, 0, self.scripts[o][min(k, len(self.scripts[o]) - 1)]] = 0.0
        return SimpleNamespace(logits=logits)


def _scripted(tokenizer, prompts, completions):
    scripts = [tokenizer.encode(c) for c in completions]
    model = ScriptedLM(prompts, scripts, len(tokenizer))
    return SimpleNamespace(model=model, tokenizer=tokenizer, eos_token_ids=[tokenizer.eos_token_id])


@pytest.fixture(scope="module")
def mt_tokenizer(tiny_policy_dir_multitoken):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny_policy_dir_multitoken)
    assert len(tok.encode("[DONE]")) > 1                            # the stop spans several tokens
    return tok


def _run_scripted(tok, completions, monkeypatch, **kw):
    prompts = [tok.encode("a = 1\n"), tok.encode("def f(x):\n    return x\n")]
    pol = _scripted(tok, prompts, completions)
    pol.model._orig = list(range(len(prompts)))
    real = fastgen._compact

    def tracking(cache, keep, tensors):                       # keep the stub's row map in step
        pol.model._orig = [pol.model._orig[i] for i in keep.tolist()]
        return real(cache, keep, tensors)

    monkeypatch.setattr(fastgen, "_compact", tracking)
    out = static_generate(pol, prompts, _cfg(stop="[DONE]", **kw.pop("cfg", {})), **kw)
    return pol, out


def test_multitoken_stop_truncates_after_stop(mt_tokenizer, monkeypatch):
    tok = mt_tokenizer
    completions = ["x + 2\n[DONE]\nmore junk that must go", "return 3\n[DONE]  tail"]
    pol, out = _run_scripted(tok, completions, monkeypatch, cfg=dict(max_new_tokens=40))
    for o, c in zip(out, completions):
        text = tok.decode(o)
        assert text.endswith("[DONE]") and text.count("[DONE]") == 1
        assert o == tok.encode(c)[: len(o)]


def test_all_finished_exits_early_and_compacts(mt_tokenizer, monkeypatch):
    tok = mt_tokenizer
    short, long = "y\n[DONE]", "z = 1\n" * 6 + "[DONE]"
    n_short, n_long = len(tok.encode(short)), len(tok.encode(long))
    pol, out = _run_scripted(tok, [short, long], monkeypatch, cfg=dict(max_new_tokens=200), check_every=2,
                             min_batch=1)
    assert [len(o) for o in out] == [n_short, n_long]
    decode_calls = pol.model.calls[1:]
    # exit at the first check (every 2 steps) after the last row finished, not after 200 steps
    assert len(decode_calls) <= n_long + 1 and len(decode_calls) >= n_long - 1
    # after the short row finished, the batch was compacted from 2 rows to 1
    assert decode_calls[0] == 2 and decode_calls[-1] == 1


def test_eos_ends_sequence(mt_tokenizer, monkeypatch):
    tok = mt_tokenizer
    prompts = [tok.encode("a = 1\n")]
    scripts = [tok.encode("x = 1\n") + [tok.eos_token_id] + tok.encode("junk")]
    pol = SimpleNamespace(model=ScriptedLM(prompts, scripts, len(tok)), tokenizer=tok,
                          eos_token_ids=[tok.eos_token_id])
    pol.model._orig = [0]
    out = static_generate(pol, prompts, _cfg(stop="[DONE]", max_new_tokens=30))
    assert out == [scripts[0][: scripts[0].index(tok.eos_token_id) + 1]]


def test_forced_lengths_and_bad_input(tiny_policy):
    prompts = [tiny_policy.tokenizer.encode(p) for p in PROMPTS[:3]]
    out = static_generate(tiny_policy, prompts, _cfg(max_new_tokens=16), forced_lengths=[3, 16, 1])
    full = static_generate(tiny_policy, prompts, _cfg(max_new_tokens=16))
    assert [len(o) for o in out] == [min(n, len(f)) for n, f in zip([3, 16, 1], full)]
    assert all(o == f[: len(o)] for o, f in zip(out, full))
    with pytest.raises(FastGenError, match="empty prompt"):
        static_generate(tiny_policy, [[]], _cfg())
    assert static_generate(tiny_policy, [], _cfg()) == []


def test_compaction_drops_finished_rows_from_a_real_cache(peaky_policy):
    """Rows that end early leave the batch (check_every=1, buckets down to 1 row): the real model's StaticCache
    layers shrink with them, in the layout of every transformers pyproject allows (4.56: a layer is set up once
    its `keys` exist; 5.x: `is_initialized`), and the greedy tokens are those of the uncompacted run."""
    prompts = [peaky_policy.tokenizer.encode(p) for p in PROMPTS]
    cfg = _cfg(max_new_tokens=12)
    full = static_generate(peaky_policy, prompts, cfg, compact=False)
    forced = [2, 12, 4, 7]
    out = static_generate(peaky_policy, prompts, cfg, compact=True, check_every=1, min_batch=1, forced_lengths=forced)
    assert out == [f[:n] for f, n in zip(full, forced)]


def test_seeded_sampling_reproducible(tiny_policy):
    prompts = [tiny_policy.tokenizer.encode(p) for p in PROMPTS]
    cfg = _cfg(greedy=False, temperature=1.0, top_p=0.95, max_new_tokens=16)
    a = static_generate(tiny_policy, prompts, cfg, seed=7)
    assert a == static_generate(tiny_policy, prompts, cfg, seed=7)
    assert a != static_generate(tiny_policy, prompts, cfg, seed=8)


def test_sample_next_top_p_distribution():
    # p = (0.5, 0.3, 0.2); top_p = 0.6 keeps {0, 1}: renormalised (0.625, 0.375, 0)
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]])).repeat(20000, 1)
    g = torch.Generator().manual_seed(0)
    draws = sample_next(logits, temperature=1.0, top_p=0.6, greedy=False, generator=g)
    freq = torch.bincount(draws, minlength=3).float() / len(draws)
    assert freq[2] == 0
    assert abs(freq[0].item() - 0.625) < 0.015
    # temperature 0.5 squares the odds: p ~ (25, 9, 4) / 38
    draws = sample_next(logits, temperature=0.5, top_p=1.0, greedy=False, generator=g)
    freq = torch.bincount(draws, minlength=3).float() / len(draws)
    assert abs(freq[0].item() - 25 / 38) < 0.015 and abs(freq[2].item() - 4 / 38) < 0.01
    assert sample_next(logits[:2], 1.0, 1.0, True, None).tolist() == [0, 0]
    # top_p = 0.8: {0, 1} already holds mass 0.8, so token 2 is dropped (HF's TopP keeps the same set)
    draws = sample_next(logits, temperature=1.0, top_p=0.8, greedy=False, generator=g)
    assert int((draws == 2).sum()) == 0


@pytest.mark.slow
def test_compiled_step_matches_eager(tiny_policy):
    """The compiled decode step (inductor on CPU; CUDA graphs on a GPU) gives the same tokens,
    also on a second call that reuses (resets) the cache kept on the model."""
    prompts = [tiny_policy.tokenizer.encode(p) for p in PROMPTS]
    cfg = _cfg(greedy=False, temperature=1.0, max_new_tokens=12)
    eager = static_generate(tiny_policy, prompts, cfg, seed=3, compile=False)
    assert static_generate(tiny_policy, prompts, cfg, seed=3, compile=True, compact=False) == eager
    held = dict(tiny_policy.decode_cache.static_caches)
    assert static_generate(tiny_policy, prompts, cfg, seed=3, compile=True, compact=False) == eager
    assert tiny_policy.decode_cache.static_caches == held                   # reused, not rebuilt
    # another batch shape gets its own cache; going back reuses the first
    assert static_generate(tiny_policy, prompts[:2], cfg, seed=3, compile=True, compact=False) == \
        static_generate(tiny_policy, prompts[:2], cfg, seed=3, compile=False)
    assert len(tiny_policy.decode_cache.static_caches) == 2
    assert static_generate(tiny_policy, prompts, cfg, seed=3, compile=True, compact=False) == eager
    assert all(tiny_policy.decode_cache.static_caches[k] is v for k, v in held.items())
    fastgen.release_static_cache(tiny_policy)
    assert tiny_policy.decode_cache.static_caches == {}
    # compaction under compile: new batch shapes recompile the step; greedy tokens unchanged
    greedy = _cfg(max_new_tokens=12)
    assert static_generate(tiny_policy, prompts, greedy, compile=True, check_every=2, min_batch=1,
                           forced_lengths=[2, 12, 4, 7]) == [
        o[:n] for o, n in zip(static_generate(tiny_policy, prompts, greedy, compile=False), [2, 12, 4, 7])]


def test_vllm_backend_missing_is_one_clear_error(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "vllm", None)          # as if vLLM were not installed
    with pytest.raises(ImportError, match="backend 'vllm' needs vLLM"):
        vllm_backend.vllm_generate(SimpleNamespace(model=None, tokenizer=None), [[1, 2]], _cfg())


@pytest.mark.slow
def test_rollout_bench_smoke_and_cpu(tmp_path):
    """benchmarks/rollout_bench.py: the --gpu code path with 2-layer configs (--smoke) and the CPU
    mode both run and write the promised JSON lines; the forced realistic lengths are honoured."""
    import json
    import runpy
    bench = runpy.run_path(str(__import__("pathlib").Path(__file__).parents[1] / "benchmarks" / "rollout_bench.py"))
    out = tmp_path / "bench.jsonl"
    bench["main"](["--smoke", "--archs", "Qwen/Qwen2.5-0.5B", "--out", str(out)])
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    sections = [r["section"] for r in recs]
    for s in ("baseline_hf_nostop", "static_nostop", "static_realistic", "ratio", "train_step", "memory_check",
              "paper_run_estimate", "colab_plan"):
        assert s in sections, s
    real = next(r for r in recs if r["section"] == "static_realistic" and r["batch"] == 4)
    lens = bench["assumed_lengths"](4, 12, 0.5, seed=4, cap=48)
    assert real["mean_new_tokens"] == sum(lens) / 4 and real["steps"] == min(48, -(-max(lens) // 16) * 16)
    base = next(r for r in recs if r["section"] == "baseline_hf_nostop")
    assert base["mean_new_tokens"] == 48 and base["new_tokens_per_s"] > 0
    eq = next(r for r in recs if r["section"] == "greedy_equality_vs_hf")
    assert eq["identical_rows"] == 8 and eq["mean_common_prefix"] == 32
    est = next(r for r in recs if r["section"] == "paper_run_estimate")
    assert est["hours"]["baseline"] > 0 and est["hours"]["repo"] > 0
    out2 = tmp_path / "cpu.jsonl"
    bench["main"](["--rollouts", "6", "--cpu-new-tokens", "24", "--cpu-batch", "4", "--out", str(out2)])
    cpu = [r for r in map(json.loads, out2.read_text().splitlines()) if r["section"] == "cpu_rollouts"]
    assert {(r["backend"], r["stop"]) for r in cpu} == {("hf", "[DONE]"), ("static", "[DONE]"), ("hf", None),
                                                        ("static", None)}
    assert all(r["greedy_identical_hf_static"] and r["rollouts"] == 6 and r["rollouts_per_s"] > 0 for r in cpu)
