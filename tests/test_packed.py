"""Backend "packed" (continuous batching): same greedy tokens as "hf", rows replaced as they end."""
import pytest
import torch

from cocos_lib.generation import packed
from cocos_lib.generation.dispatch import generate
from cocos_lib.sampling import SamplingConfig

TEXTS = ["def add(a, b):", "You are an expert Python programmer, and here is your task: Write a function",
         "assert is_even(4) == True\n", "x", "import math\nfrom typing import List\n\ndef sum_list(lst",
         "while True:", "def first_word(s):\n    words = s.split(' ')", "[BEGIN]\n", "def max_of_list(xs):"]


@pytest.fixture(scope="module")
def prompts(tiny_policy):
    return [tiny_policy.tokenizer(t)["input_ids"] for t in TEXTS]


@pytest.mark.parametrize("stop,batch", [(None, 3), (":)", 3), (":)", 4), ("\n\n\n", 2), ("ionion", 16),
                                        ("[DONE]", 2)])
def test_greedy_equals_hf(tiny_policy, prompts, stop, batch):
    """The random tiny model repeats itself (e.g. "):):)..", "\n\n\n.."): these stops end some rows
    after a few tokens and not others, so rows leave and new ones join mid-run."""
    cfg = SamplingConfig(greedy=True, max_new_tokens=12, stop=stop, batch_size=batch)
    want = generate(tiny_policy, prompts, SamplingConfig(greedy=True, max_new_tokens=12, stop=stop, batch_size=1))
    got = generate(tiny_policy, prompts, cfg, backend="packed")
    assert got == want
    if stop not in (None, "[DONE]"):
        assert min(map(len, got)) < 12 == max(map(len, got))  # rows really ended at different steps


def test_eos_and_lengths(tiny_policy, prompts, monkeypatch):
    """EOS ends a row (EOS kept); ignore_eos runs every row to max_new_tokens."""
    eos = tiny_policy.tokenizer("\n", add_special_tokens=False)["input_ids"][0]  # rows 2 and 7 write it
    monkeypatch.setattr(type(tiny_policy), "eos_token_ids", property(lambda self: [eos]))
    cfg = SamplingConfig(greedy=True, max_new_tokens=10, stop=None, batch_size=3)
    want = generate(tiny_policy, prompts, cfg)
    assert generate(tiny_policy, prompts, cfg, backend="packed") == want
    assert any(w and w[-1] == eos and len(w) < 10 for w in want)
    full = SamplingConfig(greedy=True, max_new_tokens=10, stop=None, batch_size=3, ignore_eos=True)
    assert [len(g) for g in generate(tiny_policy, prompts, full, backend="packed")] == [10] * len(prompts)


def test_sampling_is_seeded_and_leaves_global_rng(tiny_policy, prompts):
    cfg = SamplingConfig(temperature=0.9, max_new_tokens=8, stop=None, batch_size=4)
    state = torch.get_rng_state()
    a = generate(tiny_policy, prompts, cfg, seed=5, backend="packed")
    assert torch.equal(state, torch.get_rng_state())
    assert a == generate(tiny_policy, prompts, cfg, seed=5, backend="packed")
    assert a != generate(tiny_policy, prompts, cfg, seed=6, backend="packed")


def test_join_and_trim_keep_rows_right_aligned(tiny_policy, prompts):
    """Internals by hand: two prefills joined (left-padded to the wider), then a row dropped and the
    all-padding slots trimmed; cache width always equals the mask width."""
    model, pad = tiny_policy.model, tiny_policy.tokenizer.pad_token_id
    live = packed._Live("cpu")
    for group in ([prompts[3]], [prompts[1], prompts[0]]):
        new = packed._Live("cpu")
        new.logits, new.cache, new.mask, new.pos = packed._prefill(model, group, pad, "cpu", "cache")
        new.index, new.tokens, new.state = list(range(len(group))), [[] for _ in group], torch.zeros(len(group))
        live = packed._join(live, new)
    widths = {layer.keys.shape[-2] for layer in packed._layers(live.cache)}
    assert widths == {live.mask.shape[1]} == {len(prompts[1])}
    assert live.mask.sum(1).tolist() == [len(prompts[3]), len(prompts[1]), len(prompts[0])]
    assert live.pos.tolist() == [len(prompts[3]), len(prompts[1]), len(prompts[0])]
    packed._keep(live, [0, 2])  # the longest row leaves: the rest needs only len(prompts[0]) slots
    assert live.mask.shape[1] == len(prompts[0]) == live.cache.layers[0].keys.shape[-2]
    assert bool(live.mask[:, 0].any()) and live.logits.shape[0] == 2


def test_rollout_and_config_accept_packed():
    from cocos_lib.config import make_config
    from cocos_lib.rollout import RolloutConfig
    assert RolloutConfig(backend="packed").backend == "packed"
    assert make_config("cpu", backend="packed").backend == "packed"
    with pytest.raises(packed.fastgen.FastGenError, match="empty prompt"):
        packed.packed_generate(None, [[1], []], SamplingConfig())


def test_identical_prompts_are_prefilled_once_and_decode_as_separate_rows(tiny_policy, prompts, monkeypatch):
    """k copies of one prompt (a group's shared turn-2 prompt): one prefill row each unique prompt, and
    greedy rows equal those of the same prompts given once each; sampled copies still differ."""
    seen = []
    real = tiny_policy.model.forward

    def spy(*a, **kw):
        if kw.get("logits_to_keep") == 1:                      # the prefill call
            seen.append(kw["input_ids"].shape[0])
        return real(*a, **kw)
    monkeypatch.setattr(tiny_policy.model, "forward", spy)
    group = [prompts[1]] * 4 + [prompts[0]] * 4
    cfg = SamplingConfig(greedy=True, max_new_tokens=6, stop=None, batch_size=8)
    got = generate(tiny_policy, group, cfg, backend="packed")
    assert seen == [2]                                         # one prefill forward: 8 prompts, 2 unique rows
    once = generate(tiny_policy, [prompts[1], prompts[0]], cfg, backend="packed")
    assert got == [once[0]] * 4 + [once[1]] * 4
    hot = SamplingConfig(temperature=1.5, max_new_tokens=6, stop=None, batch_size=8)
    assert len({tuple(x) for x in generate(tiny_policy, [prompts[1]] * 4, hot, seed=1, backend="packed")}) > 1
