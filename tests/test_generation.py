"""The "hf" generation backend: stop strings, EOS, determinism, batching, seeding."""
import contextlib

import pytest
import torch

from cocos_lib.generation import hf as G
from cocos_lib.generation.dispatch import generate
from cocos_lib.sampling import SamplingConfig, truncate_completion
from cocos_lib.models import load_policy


def enc(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


@contextlib.contextmanager
def forced(policy, rows):
    """Make the model emit rows[b][step] at each decode step (a hook adds +1e4 to that logit)."""
    state = {"calls": 0}

    def hook(module, inputs, out):
        step = state["calls"]
        state["calls"] += 1
        for b, seq in enumerate(rows):
            if step < len(seq):
                out[b, -1, seq[step]] += 1e4
        return out

    h = policy.model.get_output_embeddings().register_forward_hook(hook)
    try:
        yield state
    finally:
        h.remove()


@pytest.fixture(scope="module")
def mt_policy(tiny_policy_dir_multitoken):
    return load_policy(tiny_policy_dir_multitoken, dtype="fp32", device="cpu")


def test_truncate_completion_known_ids(mt_policy):
    tok = mt_policy.tokenizer
    a, done, rest = enc(tok, "x = 1\n"), enc(tok, "[DONE]"), enc(tok, "\nprint(x)")
    assert len(done) == 3  # "[", "DONE", "]": a multi-token stop string
    assert truncate_completion(a + done + rest, tok, "[DONE]") == a + done
    assert truncate_completion(a + done + rest + done, tok, "[DONE]") == a + done  # first one
    assert truncate_completion(a + done[:2] + rest, tok, "[DONE]") == a + done[:2] + rest  # incomplete
    assert truncate_completion(a + [0] + done, tok, "[DONE]", eos_ids=[0]) == a + [0]  # EOS first
    assert truncate_completion(a + done + [0], tok, "[DONE]", eos_ids=[0]) == a + done
    assert truncate_completion(a + done + rest, tok, None) == a + done + rest
    assert truncate_completion(a + [0, 0, 0], tok, None, eos_ids=[0]) == a + [0]
    assert truncate_completion([], tok, "[DONE]") == []


def test_truncate_completion_single_token_stop(tiny_policy):
    tok = tiny_policy.tokenizer
    done = enc(tok, "[DONE]")
    assert done == [385]
    a = enc(tok, "return a + b\n")
    assert truncate_completion(a + done + a + done, tok, "[DONE]") == a + done


def test_stop_during_generation_multitoken(mt_policy):
    """Three rows forced to write: code+[DONE]+junk, code+EOS, code without stop. Each row is cut
    at its own end; generation ends when the last row is done, not at max_new_tokens."""
    tok = mt_policy.tokenizer
    code, done, junk = enc(tok, "return a\n"), enc(tok, "[DONE]"), enc(tok, "\nx = 2\ny = 3\n")
    rows = [code + done + junk * 5, code[:2] + [0] + junk * 5, code + junk]
    prompt = enc(tok, "def f(a):\n    ")
    cfg = SamplingConfig(max_new_tokens=len(code + junk) + 4, greedy=True, batch_size=8)
    with forced(mt_policy, rows) as state:
        out = generate(mt_policy, [prompt] * 3, cfg)
    assert out[0] == code + done
    assert out[1] == code[:2] + [0]
    assert out[2][:len(code + junk)] == code + junk and len(out[2]) == cfg.max_new_tokens
    assert state["calls"] == cfg.max_new_tokens  # row 2 never stops

    cfg = SamplingConfig(max_new_tokens=40, greedy=True)
    with forced(mt_policy, rows[:2]) as state:
        out = generate(mt_policy, [prompt] * 2, cfg)
    assert out == [code + done, code[:2] + [0]]
    assert state["calls"] == len(code + done)  # stopped early: not 40 steps


def test_stop_during_generation_single_token(tiny_policy):
    tok = tiny_policy.tokenizer
    rows = [enc(tok, "x") + [385] + enc(tok, "yy")]
    with forced(tiny_policy, rows) as state:
        out = generate(tiny_policy, [enc(tok, "a = ")], SamplingConfig(max_new_tokens=30, temperature=0.9), seed=1)
    assert out == [enc(tok, "x") + [385]] and state["calls"] == len(out[0])
    assert tok.decode(out[0]).endswith("[DONE]")


def _prompts(tok, n=12):
    texts = ["def f%d(x):\n    return" % i + " x" * (i % 5) for i in range(n)]
    return [enc(tok, t) for t in texts]


def test_greedy_is_deterministic_and_batch_size_invariant(tiny_policy):
    prompts = _prompts(tiny_policy.tokenizer)
    assert len({len(p) for p in prompts}) > 1  # ragged: left padding matters
    cfg = SamplingConfig(max_new_tokens=24, greedy=True, batch_size=12, stop=None)
    a = generate(tiny_policy, prompts, cfg)
    assert all(len(x) == 24 for x in a)  # the random model never emits EOS here
    assert generate(tiny_policy, prompts, cfg, seed=5) == a
    for bs in (1, 5):
        assert generate(tiny_policy, prompts, SamplingConfig(max_new_tokens=24, greedy=True, batch_size=bs, stop=None)) == a
    # each row alone equals its row in the batch (padding does not leak)
    assert generate(tiny_policy, prompts[7:8], cfg) == a[7:8]
    # greedy = argmax of the model's next-token logits for the first step
    with torch.no_grad():
        logits = tiny_policy.model(input_ids=torch.tensor([prompts[0]])).logits[0, -1]
    assert a[0][0] == int(logits.argmax())


def test_seeded_sampling(tiny_policy):
    prompts = _prompts(tiny_policy.tokenizer, 6)
    cfg = SamplingConfig(max_new_tokens=16, temperature=1.0, batch_size=4, stop=None)
    rng = torch.get_rng_state()
    a = generate(tiny_policy, prompts, cfg, seed=7)
    assert torch.equal(rng, torch.get_rng_state())  # global RNG untouched
    assert generate(tiny_policy, prompts, cfg, seed=7) == a
    assert generate(tiny_policy, prompts, cfg, seed=8) != a
    greedy = generate(tiny_policy, prompts, SamplingConfig(max_new_tokens=16, greedy=True, stop=None))
    assert a != greedy


def test_dispatch_and_bad_config(tiny_policy):
    from cocos_lib.generation.dispatch import GENERATORS
    from cocos_lib.sampling import BACKENDS
    assert set(GENERATORS) == set(BACKENDS)
    calls = []
    fakes = {"static": lambda p, ids, cfg, seed: calls.append(("s", seed)) or [[1]],
             "vllm": lambda p, ids, cfg, seed: calls.append(("v", seed)) or [[2]]}
    assert generate(tiny_policy, [[3]], SamplingConfig(), 4, backend="static", backends=fakes) == [[1]]
    assert generate(tiny_policy, [[3]], SamplingConfig(), 5, backend="vllm", backends=fakes) == [[2]]
    assert calls == [("s", 4), ("v", 5)]
    assert generate(tiny_policy, [], SamplingConfig()) == []
    with pytest.raises(ValueError, match="backend 'foo'"):
        generate(tiny_policy, [[3]], SamplingConfig(), backend="foo")
    with pytest.raises(ValueError, match="temperature"):
        SamplingConfig(temperature=0.0)
    with pytest.raises(ValueError, match="empty prompt"):
        generate(tiny_policy, [[3], []], SamplingConfig(max_new_tokens=2))
    assert SamplingConfig(temperature=0.0, greedy=True).greedy


def test_model_mode_restored(tiny_policy):
    tiny_policy.model.train()
    generate(tiny_policy, [[3, 4]], SamplingConfig(max_new_tokens=2, greedy=True))
    assert tiny_policy.model.training
    tiny_policy.model.eval()


def test_pure_temperature_sampling_ignores_checkpoint_generation_config(tiny_policy):
    """y_1 ~ softmax(logits / T) exactly: no top-k 50 (HF's default) and none of the
    checkpoint's own settings (Llama-3.2 ships temperature 0.6, top_p 0.9)."""
    prompt = [5, 6, 7, 8]
    with torch.no_grad():
        logits = tiny_policy.model(input_ids=torch.tensor([prompt])).logits[0, -1]
    probs = torch.softmax(logits / 0.7, -1)
    cfg = SamplingConfig(max_new_tokens=1, temperature=0.7, top_p=1.0, stop=None)
    gen = tiny_policy.model.generation_config
    saved = gen.to_dict()
    gen.top_k, gen.temperature, gen.top_p, gen.repetition_penalty = 1, 0.01, 0.5, 5.0
    try:
        for seed in range(20):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                expected = int(torch.multinomial(probs[None], 1))
            assert generate(tiny_policy, [prompt], cfg, seed=seed) == [[expected]]
    finally:
        tiny_policy.model.generation_config = type(gen).from_dict(saved)
    assert tiny_policy.model.generation_config.top_k == saved.get("top_k")
    assert len({generate(tiny_policy, [prompt], cfg, seed=s)[0][0] for s in range(20)}) > 5  # not top-1


def test_unseeded_calls_differ(tiny_policy):
    cfg = SamplingConfig(max_new_tokens=8, temperature=1.0, stop=None)
    assert generate(tiny_policy, [[5, 6]] * 4, cfg) != generate(tiny_policy, [[5, 6]] * 4, cfg)


def test_last_char_table(tiny_policy, mt_policy):
    tok = tiny_policy.tokenizer
    lut = G.last_char_table(tok, "[DONE]", 400)
    assert lut.shape == (400,) and bool(lut[385])  # the [DONE] token itself
    assert all(lut[387:])  # ids the tokenizer does not know are always checked
    ids = {t: enc(tok, t)[0] for t in ["x", "]", "("]}
    assert [bool(lut[ids[t]]) for t in ["x", "]", "("]] == [False, True, False]
    assert sum(lut[:387].tolist()) == sum("]" in tok.decode([i]) for i in range(387))
    assert G.last_char_table(tok, "end\u00e9", 400) is None  # non-ASCII last char: no filter
    mt = mt_policy.tokenizer
    assert bool(G.last_char_table(mt, "[DONE]", len(mt))[enc(mt, "[DONE]")[-1]])


@pytest.fixture(scope="module")
def char_policy(tmp_path_factory):
    """The toy world's character tokenizer ([DONE] is one *special* token) on a tiny Llama."""
    from transformers import LlamaConfig, LlamaForCausalLM
    from cocos_lib.toy.warmstart import char_tokenizer
    tok = char_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, eos_token_id=tok.eos_token_id,
                      bos_token_id=None, pad_token_id=tok.pad_token_id)
    out = tmp_path_factory.mktemp("char_policy")
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return load_policy(out)


def test_special_token_stop(char_policy):
    from cocos_lib.rollout import decode_completion
    tok = char_policy.tokenizer
    done = tok.convert_tokens_to_ids("[DONE]")
    assert done in tok.all_special_ids and enc(tok, "[DONE]") == [done]
    assert tok.pad_token == "<pad>" and char_policy.eos_token_ids == [tok.eos_token_id]
    code = enc(tok, "return 1\n")
    with forced(char_policy, [code + [done] + code]) as state:
        out = generate(char_policy, [enc(tok, "def f():\n    ")], SamplingConfig(max_new_tokens=30, greedy=True))
    assert out == [code + [done]] and state["calls"] == len(code) + 1
    assert decode_completion(char_policy, out[0]) == "return 1\n[DONE]"


def test_lora_policy_generates_like_its_base(tiny_policy_dir, tiny_policy):
    from cocos_lib.models import LoraSpec
    lora = load_policy(tiny_policy_dir, lora=LoraSpec(r=2, alpha=4, dropout=0.0))  # B = 0: same function
    prompts = _prompts(tiny_policy.tokenizer, 4)
    cfg = SamplingConfig(max_new_tokens=10, greedy=True, stop=None)
    assert generate(lora, prompts, cfg) == generate(tiny_policy, prompts, cfg)
    assert lora.model.get_base_model().generation_config.eos_token_id == 0  # restored after the swap


@pytest.mark.parametrize("greedy", [True, False])
def test_no_invalid_generation_flags_warning(tiny_policy, greedy):
    """transformers validates the per-call GenerationConfig: no "generation flags are not
    valid" warning (e.g. top_k with greedy decoding); sampling keeps top_k=0 (off)."""
    import logging

    from transformers.utils import logging as hf_logging

    cfg = SamplingConfig(max_new_tokens=3, greedy=greedy, stop=None)
    gc = G.hf_generation_config(cfg, [0], 0)
    gc.validate(strict=True)  # raises ValueError on any minor issue
    assert (gc.do_sample, gc.top_k) == ((False, None) if greedy else (True, 0))
    records = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append
    root = hf_logging.get_logger("transformers")
    hf_logging.warning_once.cache_clear()  # the warning is logged once per process
    root.addHandler(handler)
    try:
        import warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = generate(tiny_policy, [[5, 6, 7]], cfg, seed=0)
    finally:
        root.removeHandler(handler)
    assert len(out[0]) == 3
    texts = [r.getMessage() for r in records] + [str(w.message) for w in caught]
    assert not [t for t in texts if "not valid" in t or "top_k" in t], texts


def test_ignore_eos_runs_every_row_to_max_new_tokens(tiny_policy):
    """The released pipeline's rollouts (no stop, no EOS): every completion has max_new_tokens ids,
    in both backends, while the default stops at EOS/[DONE] where the model writes them."""
    from cocos_lib.generation.dispatch import generate
    from cocos_lib.sampling import SamplingConfig
    prompts = [tiny_policy.tokenizer("def f(x):", add_special_tokens=False)["input_ids"]] * 3
    eos = tiny_policy.eos_token_ids[0]
    forced = SamplingConfig(max_new_tokens=7, greedy=True, stop=None, ignore_eos=True, batch_size=3)
    for backend in ("hf", "static"):
        out = generate(tiny_policy, prompts, forced, backend=backend)
        assert [len(o) for o in out] == [7, 7, 7], backend
    # with the model forced to write EOS first, the default stops at once and ignore_eos does not
    head = tiny_policy.model.get_output_embeddings()
    bias = torch.zeros(head.weight.shape[0])
    bias[eos] = 1e4
    hook = head.register_forward_hook(lambda m, i, o: o + bias)
    try:
        stopped = generate(tiny_policy, prompts, SamplingConfig(max_new_tokens=7, greedy=True, stop=None), backend="hf")
        kept = generate(tiny_policy, prompts, forced, backend="hf")
    finally:
        hook.remove()
    assert [len(o) for o in stopped] == [1, 1, 1] and [len(o) for o in kept] == [7, 7, 7]


def test_top_k_option_hf_only():
    """#15: top_k 0 (off) by default; 50 is the release's (HF 4.x's unset default); other backends refuse it."""
    assert G.hf_generation_config(SamplingConfig(), [0], 0).top_k == 0
    assert G.hf_generation_config(SamplingConfig(top_k=50), [0], 0).top_k == 50
    with pytest.raises(ValueError, match="top_k=50 is implemented by the hf backend only"):
        generate(None, [[1]], SamplingConfig(top_k=50), backend="static")
    with pytest.raises(ValueError, match="top_k=-1"):
        SamplingConfig(top_k=-1)


def test_top_k_sampling_draws_only_top_k_tokens(tiny_policy):
    out = generate(tiny_policy, [[5, 6, 7]] * 4, SamplingConfig(max_new_tokens=1, top_k=1, stop=None,
                                                                 temperature=5.0), seed=0)
    greedy = generate(tiny_policy, [[5, 6, 7]], SamplingConfig(max_new_tokens=1, greedy=True, stop=None))
    assert out == greedy * 4  # top_k 1 at any temperature is the argmax
