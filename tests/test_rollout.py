"""Multi-turn rollouts: order, shared turn 1, prompts, rewards, execution batching."""
import pytest

from cocos_lib import rollout as R
from cocos_lib.sampling import SamplingConfig
from cocos_lib.prompts import build_prompt
from cocos_lib.rewards import REWARDS
from cocos_lib.rollout import RolloutConfig, rollout
from cocos_lib.tasks import Task

ADD = Task("t/0", "Write a function to add two numbers.",
           ("assert add(1, 2) == 3", "assert add(0, 0) == 0", "assert add(2, 2) == 4"))
DOUBLE = Task("t/1", "Write a function to double a number.", ("assert double(1) == 2", "assert double(3) == 6"))


class CountingExecutor:
    """Wraps the real executor; records each run_many batch."""

    def __init__(self, ex):
        self.ex, self.batches = ex, []

    def run_many(self, jobs, progress=False):
        self.batches.append(list(jobs))
        return self.ex.run_many(jobs, progress=progress)


def scripted(policy, log):
    """Fake `generate`: the n-th completion overall is code whose quality depends on n % 3:
    add: n%3==0 passes 3/3; n%3==1 fails add(1,2); n%3==2 fails add(2,2) (2/3 each).
    double: n%3==0 passes 2/2, else fails double(3) (1/2)."""
    tok = policy.tokenizer

    def fake(pol, prompt_ids, cfg, seed=None, backend="hf"):
        out = []
        for ids in prompt_ids:
            n = len(log["codes"])
            if "add two" in tok.decode(ids):
                code = f"def add(a, b):\n    return a + b if a != {n % 3} else 0"
                frac = 1.0 if n % 3 == 0 else 2 / 3
            else:
                code = f"def double(x):\n    return 2 * x if x != 3 or {n % 3} == 0 else 0"
                frac = 1.0 if n % 3 == 0 else 1 / 2
            log["codes"].append(code)
            log["frac"][code] = frac
            out.append(tok(code + "\n[DONE]", add_special_tokens=False)["input_ids"])
        log["calls"].append((len(prompt_ids), seed, backend))
        return out
    return fake


@pytest.fixture
def log(monkeypatch, tiny_policy):
    log = {"codes": [], "frac": {}, "calls": []}
    monkeypatch.setattr(R, "generate", scripted(tiny_policy, log))
    return log


def test_shared_first_turn(tiny_policy, executor, log):
    ex = CountingExecutor(executor)
    cfg = RolloutConfig(turns=2, k=3, share_first_turn=True, fewshot="FEWSHOT\n")
    stats = {}
    trajs = rollout(tiny_policy, [ADD, DOUBLE], cfg, ex, seed=4, stats=stats)
    assert [(t.group, t.sample) for t in trajs] == [(g, s) for g in range(2) for s in range(3)]
    assert [t.task for t in trajs] == [ADD] * 3 + [DOUBLE] * 3
    assert all(len(t.turns) == 2 for t in trajs)
    # turn 1: 2 prompts generated once, shared; turn 2: 6 prompts
    assert [c[0] for c in log["calls"]] == [2, 6]
    assert log["calls"][0][1] != log["calls"][1][1]  # a different seed per turn
    assert [len(b) for b in ex.batches] == [2, 6]  # one executor batch per turn, shared code run once
    for g in range(2):
        group = trajs[3 * g:3 * g + 3]
        first = [t.turns[0] for t in group]
        assert all(u.completion_ids == first[0].completion_ids and u.code == first[0].code
                   and u.prompt_ids == first[0].prompt_ids and u.reward == first[0].reward for u in first)
        assert first[0].completion_ids is not first[1].completion_ids  # copies, not aliases
        assert len({t.turns[1].code for t in group}) == 3  # turn 2 independent
    tok = tiny_policy.tokenizer
    for tr in trajs:
        t1, t2 = tr.turns
        assert tok.decode(t1.prompt_ids) == build_prompt(tr.task, [], "FEWSHOT\n")
        assert tok.decode(t2.prompt_ids) == build_prompt(tr.task, [t1.code])
        assert t1.code in tok.decode(t2.prompt_ids) and "FEWSHOT" not in tok.decode(t2.prompt_ids)
        assert t1.text.endswith("[DONE]") and t1.completion_mask == [1] * len(t1.completion_ids)
    assert stats["tokens"] == sum(len(t.turns[0].completion_ids) for t in trajs[::3]) + \
        sum(len(t.turns[1].completion_ids) for t in trajs)
    assert stats["sec_generate"] >= 0 and stats["sec_execute"] > 0


def test_independent_first_turn_and_rewards(tiny_policy, executor, log):
    cfg = RolloutConfig(turns=3, k=2, share_first_turn=False, reward="progressive")
    trajs = rollout(tiny_policy, [ADD, DOUBLE], cfg, executor, seed=0)
    assert [c[0] for c in log["calls"]] == [4, 4, 4]
    assert trajs[0].turns[0].code != trajs[1].turns[0].code
    for tr in trajs:
        for u in tr.turns:
            frac = log["frac"][u.code]  # hand-computed share of passing tests
            assert u.report.fraction == pytest.approx(frac)
            assert u.reward == pytest.approx(frac) == REWARDS["progressive"](u.report)
            assert u.report.all_passed == (frac == 1.0)
        r1, r2, r3 = tr.rewards
        assert tr.accumulated(0.5) == pytest.approx(0.25 * r1 + 0.5 * (r2 - r1) + (r3 - r2))
    # trajectory 0 gets completions n = 0, 4, 8 (4 prompts per turn): n % 3 = 0, 1, 2
    assert [u.reward for u in trajs[0].turns] == pytest.approx([1.0, 2 / 3, 2 / 3])


@pytest.mark.parametrize("reward,expected", [("binary", [1.0, 0.0]), ("count", [3.0, 2.0])])
def test_reward_kinds(tiny_policy, executor, log, reward, expected):
    trajs = rollout(tiny_policy, [ADD], RolloutConfig(turns=2, k=1, reward=reward), executor)
    assert trajs[0].rewards == expected  # codes n=0 (3/3 pass) then n=1 (2/3 pass)


def test_prompt_left_truncation(tiny_policy, executor, log):
    full = tiny_policy.tokenizer(build_prompt(ADD, []))["input_ids"]
    trajs = rollout(tiny_policy, [ADD], RolloutConfig(turns=1, k=1, max_prompt_tokens=10), executor)
    assert trajs[0].turns[0].prompt_ids == full[-10:]
    assert R.encode_prompts(tiny_policy.tokenizer, ["abc", "a b c d e f g"], 3)[1] == \
        tiny_policy.tokenizer("a b c d e f g")["input_ids"][-3:]
    class BosTok:  # a tokenizer that prepends BOS (id 1), like Llama-3.2's / deepseek-coder's
        bos_token_id = 1

        def __call__(self, texts, add_special_tokens=True):
            return {"input_ids": [[1] + [ord(c) for c in t] for t in texts]}
    assert R.encode_prompts(BosTok(), ["abcdef", "ab"], 4) == [[1, 100, 101, 102], [1, 97, 98]]
    assert R.encode_prompts(BosTok(), ["abcdef"], 1) == [[102]]
    assert R.encode_prompts(BosTok(), ["abcdef"], None) == [[1, 97, 98, 99, 100, 101, 102]]
    # default budget: context (1024) - max_new_tokens
    assert R.prompt_budget(tiny_policy, RolloutConfig(sampling=SamplingConfig(max_new_tokens=24))) == 1000


def test_real_model_greedy_eval_is_deterministic(tiny_policy, executor):
    cfg = RolloutConfig(turns=2, k=1, sampling=SamplingConfig(max_new_tokens=12, greedy=True))
    a = rollout(tiny_policy, [ADD, DOUBLE], cfg, executor, seed=0)
    b = rollout(tiny_policy, [ADD, DOUBLE], cfg, executor, seed=1)
    assert [[u.completion_ids for u in t.turns] for t in a] == [[u.completion_ids for u in t.turns] for t in b]
    tok = tiny_policy.tokenizer
    for tr in a:
        assert 1 <= len(tr.turns[0].completion_ids) <= 12
        assert tok.decode(tr.turns[0].prompt_ids).endswith("[BEGIN]\n")
        assert tok.decode(tr.turns[1].prompt_ids).endswith("[CORRECT]\n")
        for u in tr.turns:  # a random model's code fails; the report still has one outcome per test
            assert len(u.report.outcomes) == len(tr.task.tests) and u.reward == u.report.fraction


def test_real_model_sampling_shared_and_seeded(tiny_policy, executor):
    cfg = RolloutConfig(turns=2, k=2, sampling=SamplingConfig(max_new_tokens=10, temperature=1.0))
    a = rollout(tiny_policy, [ADD], cfg, executor, seed=3)
    b = rollout(tiny_policy, [ADD], cfg, executor, seed=3)

    def ids(ts):
        return [[u.completion_ids for u in t.turns] for t in ts]

    assert ids(a) == ids(b)
    assert a[0].turns[0].completion_ids == a[1].turns[0].completion_ids


def test_decode_completion_drops_final_eos_only(tiny_policy):
    import types
    from cocos_lib.models import Policy
    tok = tiny_policy.tokenizer
    code = tok("x = 1\n", add_special_tokens=False)["input_ids"]
    # a model whose generation config also ends at [DONE] (id 385), like the toy warm-start
    model = types.SimpleNamespace(generation_config=types.SimpleNamespace(eos_token_id=[0, 385]))
    pol = Policy(model=model, tokenizer=tok, name="x")
    assert R.decode_completion(pol, code + [385]) == "x = 1\n[DONE]"
    assert R.decode_completion(pol, code + [0]) == "x = 1\n"
    assert R.decode_completion(pol, [0] + code) == "<|endoftext|>x = 1\n"
    assert R.decode_completion(pol, []) == ""


def test_bad_config():
    for kw, field in [({"reward": "nope"}, "reward"), ({"turns": 0}, "turns"), ({"k": 0}, "k"),
                      ({"ending": "x"}, "ending"), ({"backend": "tpu"}, "backend")]:
        with pytest.raises(ValueError, match=f"RolloutConfig.{field}="):
            RolloutConfig(**kw)
    assert rollout(None, [], RolloutConfig(), None) == []
