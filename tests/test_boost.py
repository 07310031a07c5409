"""Boost (the SFT warm-start): the release's data format, 1:1 turn-1 / turn-2 pairs, the loss on completion
tokens only, a tiny run whose loss falls, and `train` running Boost then RL (tiny profile, CI)."""
import json

import pytest
import torch

from cocos_lib.boost import BoostConfig, BoostError, Pair, boost, boost_pairs, encode_pair, main, sft_loss
from cocos_lib.config import make_config
from cocos_lib.prompts import CORRECTION_INSTRUCTION
from cocos_lib.tasks import Task

TASK = Task("MBPP/601", "Write a function to add two numbers.", ("assert add(1, 2) == 3", "assert add(0, 0) == 0"),
            reference="def add(a, b):\n    return a + b\n", source="mbpp")
QUESTION = ("You are an expert Python programmer, and here is your task: Write a function to add two numbers. "
            "Your code should pass these tests:\n\nassert add(1, 2) == 3\nassert add(0, 0) == 0")
CODE = "def add(a, b):\n    return a + b"


def test_pairs_are_the_release_format_one_to_one():
    """README "Boost Data Format": prompt.lstrip() + "\\n" + completion, with turn-1 and turn-2 pairs 1:1."""
    one, two = boost_pairs([TASK])
    assert (one.turn, two.turn) == (1, 2)
    assert one.prompt + one.completion == f"{QUESTION}\n\n[BEGIN]" + "\n" + f"{CODE}\n[DONE]"
    assert two.prompt + two.completion == (f"{QUESTION}\n\n[BEGIN]\n{CODE}\n[DONE]\n\n{CORRECTION_INSTRUCTION}"
                                           f"\n\n[CORRECT]" + "\n" + f"{CODE}\n[DONE]")
    wrong = boost_pairs([TASK], first_turns={"MBPP/601": "def add(a, b):\n    return a - b"})[1]
    assert "return a - b\n[DONE]\n\n" in wrong.prompt and wrong.completion == f"{CODE}\n[DONE]"
    many = boost_pairs([TASK] * 5)
    assert sum(p.turn == 1 for p in many) == sum(p.turn == 2 for p in many) == 5
    with pytest.raises(BoostError, match="field 'reference': task X has no solution"):
        boost_pairs([Task("X", "t", ("assert 1",))])


def test_loss_counts_completion_tokens_only(tiny_policy):
    tok = tiny_policy.tokenizer
    pair = Pair("[BEGIN]\n", "x = 1\n[DONE]", 1, "t")
    ids, n_prompt = encode_pair(tok, pair, 512)
    assert tok.decode(ids[n_prompt:]).replace(" ", "") == "x=1\n[DONE]".replace(" ", "")
    with torch.no_grad():
        got = sft_loss(tiny_policy.model, tok, [(ids, n_prompt)], tiny_policy.device, len(ids) - n_prompt)
        logp = torch.log_softmax(tiny_policy.model(torch.tensor([ids])).logits[0, :-1].float(), -1)
        want = -logp[torch.arange(n_prompt - 1, len(ids) - 1), torch.tensor(ids[n_prompt:])].mean()
    assert float(got) == pytest.approx(float(want), rel=1e-5)


def test_boost_lowers_the_loss_and_saves_a_model(tiny_policy_dir, tmp_path):
    from cocos_lib.models import load_policy
    policy = load_policy(tiny_policy_dir, dtype="fp32", device="cpu")
    pairs = boost_pairs([TASK, Task("MBPP/602", "Negate.", ("assert neg(1) == -1",), reference="def neg(x):\n"
                                    "    return -x", source="mbpp")])
    hist = boost(policy, pairs, BoostConfig(steps=6, batch=4, lr=3e-3, micro_batch=2, seed=0), tmp_path, progress=False)
    assert [m["step"] for m in hist] == list(range(1, 7)) and hist[-1]["loss"] < 0.8 * hist[0]["loss"]
    assert all(m["grad_norm"] > 0 and m["turn2_share"] == 0.5 for m in hist)
    assert hist[0]["lr"] == pytest.approx(3e-3) and hist[1]["lr"] < hist[0]["lr"]
    assert [json.loads(line)["step"] for line in open(tmp_path / "boost_metrics.jsonl")] == list(range(1, 7))
    assert (tmp_path / "final" / "config.json").is_file()


def tiny_boost_config(model, **kw):
    base = dict(model=model, n_tasks=4, updates=1, prompts_per_update=2, k=2, max_new_tokens=6, micro_batch=4,
                exec_workers=1, checkpoint_every=0, seed=3, gen_batch_size=8, boost_steps=2, boost_batch=4,
                boost_lr=1e-3)
    return make_config("tiny", **{**base, **kw})


def test_train_runs_boost_then_rl_from_the_boost_model(tiny_policy_dir, tmp_path):
    """The tiny profile with boost_steps: RUN/boost holds the SFT model, and RL starts from it (pi_ref too:
    the first update's KL is 0)."""
    from safetensors.torch import load_file

    from cocos_lib.train import train
    from test_train import HashExecutor
    hist = train(tiny_boost_config(tiny_policy_dir), tmp_path, executor=HashExecutor(), progress=False)
    assert len(hist) == 1 and hist[0]["kl"] == 0.0
    assert len(open(tmp_path / "boost" / "boost_metrics.jsonl").readlines()) == 2
    start = load_file(tmp_path / "boost" / "final" / "model.safetensors")
    base = load_file(f"{tiny_policy_dir}/model.safetensors")
    assert any(not torch.equal(start[k], base[k]) for k in base)   # Boost moved the weights RL starts from


def test_boost_cli(tiny_policy_dir, tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--steps", "1", "--no-progress", "--set", f"model={tiny_policy_dir}",
                 "--set", "n_tasks=2", "--set", "boost_batch=2"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "final")
    assert main(["--out", str(tmp_path), "--no-progress"]) == 2
    assert "config field 'boost_steps'=0: Boost needs >= 1 step" in capsys.readouterr().err
