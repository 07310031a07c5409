"""The toy world: task generator (K = 4 tests, partial passes), char tokenizer, shipped warm-start,
CoCoS learning on CPU, and the ablation runner."""
import json

import pytest

from cocos_lib.toy import warmstart as toy
from cocos_lib.toy import world as W


def test_generator_is_deterministic_and_seeded():
    a = W.toy_tasks("train", n=60, seed=3)
    assert a == W.toy_tasks("train", n=60, seed=3)
    assert a != W.toy_tasks("train", n=60, seed=4)
    assert W.toy_tasks("test", n=20, difficulty=2) == W.toy_tasks("test", n=20, difficulty=2)
    assert W.toy_tasks("test", n=20, difficulty=2) != W.toy_tasks("test", n=20)
    assert [t.task_id for t in W.toy_tasks("test", n=3)] == ["toy-test/0", "toy-test/1", "toy-test/2"]
    assert len(W.toy_tasks("train")) == 2000 and len(W.toy_tasks("test")) == 200
    assert toy.toy_tasks is W.toy_tasks  # toy re-exports the toy world's generator


def test_splits_are_disjoint_by_solution():
    train = {t.reference for d in (1, 2, 3) for t in W.toy_tasks("train", n=3000, difficulty=d)}
    test = W.toy_tasks("test")
    assert not train & {t.reference for t in test}
    assert all(W.is_test_pair(*W.parse_task(t)) for t in test)
    # every operation of the test set is also seen in training (with other constants)
    ops_train = {W.parse_task(t)[0].name for t in W.toy_tasks("train", n=500)}
    assert ops_train == {op.name for op in W.OPS} == {W.parse_task(t)[0].name for t in test}


def test_task_shape_families_and_difficulty():
    tasks = W.toy_tasks("test", n=160, seed=1)
    assert {W.parse_task(t)[0].family for t in tasks} == {"arith", "string", "list"}
    for t in tasks:
        op, n = W.parse_task(t)
        assert len(t.tests) == W.K_TESTS == 4 and len(set(t.tests)) == 4
        assert all(u.startswith(f"assert {op.name}_{n}(") for u in t.tests)
        assert t.reference.startswith(f"def {op.name}_{n}(") and str(n) in t.text and len(t.text) < 80
        assert t.source == "toy" and t.entry_point == f"{op.name}_{n}"
    sub = W.OP_BY_NAME["sub"]
    assert (max(W.constants(sub, 1)), max(W.constants(sub, 2))) == (19, 99)
    assert W.code_for(sub, 7) == "def sub_7(x):\n    return x-7"
    assert W.misconception(W.make_task(sub, 7, [10, 0, 3, 7], "t")) == "def sub_7(x):\n    return 7-x"
    assert W.wrong_bodies(W.OP_BY_NAME["gt"], 5) == ["[v for v in a if v>={n}]", "[v for v in a if v>4]",
                                                     "[v for v in a if v>6]"]
    tail, maxor = W.OP_BY_NAME["tail"], W.OP_BY_NAME["maxor"]
    assert W.agrees(tail, 3, tail.bug, "abcdef") and W.agrees(tail, 3, tail.bug, "")  # len(s) == 2n, ''
    assert not W.agrees(tail, 3, tail.bug, "abcdefg")
    assert W.agrees(maxor, 4, maxor.bug, [1, 9]) and not W.agrees(maxor, 4, maxor.bug, [])  # max([]) raises
    with pytest.raises(ValueError, match="split 'dev'"):
        W.toy_tasks("dev")
    with pytest.raises(ValueError, match="difficulty=4"):
        W.toy_tasks("test", difficulty=4)


def test_wrong_programs_pass_some_tests_but_never_all_in_the_executor():
    """References pass; every misconception and off-by-one constant fails >= 1 test. Measured on
    these 400 tasks: the misconceptions pass >= 1 test on 89.6% of the 192 tasks that have one
    (asserted >= 85%), the n +- 1 slips on 53% (asserted >= 45%); pass counts 0, 1, 2 and 3 all
    occur. There binary (0) and progressive (n_passed / 4) rewards differ."""
    from cocos_lib.executor import Executor, Job
    tasks = W.toy_tasks("test") + W.toy_tasks("train", n=200, difficulty=2)
    bugs = [t for t in tasks if W.misconception(t)]
    slips = [(t, W.code_for(*W.parse_task(t), body)) for t in tasks for body in W.wrong_bodies(*W.parse_task(t))[-2:]]
    with Executor(workers=2) as ex:
        refs = ex.run_many([Job(t.reference, t.tests) for t in tasks])
        wrong = ex.run_many([Job(W.misconception(t), t.tests) for t in bugs])
        slipped = ex.run_many([Job(code, t.tests) for t, code in slips])
    assert all(r.all_passed for r in refs)
    assert len(bugs) >= 150 and all(r.n_passed < 4 for r in wrong + slipped)
    assert sum(r.n_passed >= 1 for r in wrong) >= 0.85 * len(wrong)
    assert sum(r.n_passed >= 1 for r in slipped) >= 0.45 * len(slipped)
    assert {r.n_passed for r in wrong} == {0, 1, 2, 3} and {r.n_passed for r in slipped} == {0, 1, 2, 3}


def test_char_tokenizer_round_trip_and_single_token_markers():
    tok = toy.char_tokenizer()
    text = "assert tail_3('abcd') == 'bcd'\n[BEGIN]\ndef f(a):\n    return [v for v in a if v>3]\n[DONE]"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=False) == text
    assert len(ids) == len(text) - len("[BEGIN]") - len("[DONE]") + 2
    for m in ("[BEGIN]", "[DONE]", "[CORRECT]"):
        assert tok(m, add_special_tokens=False)["input_ids"] == [tok.convert_tokens_to_ids(m)]
    assert tok(" [ ", add_special_tokens=False)["input_ids"] == [tok.convert_tokens_to_ids(c) for c in " [ "]
    assert (tok.eos_token, tok.pad_token, tok.padding_side) == ("<eos>", "<pad>", "left")
    assert len(tok) == 6 + 96


def test_warmstart_ships_small_and_loads_through_load_policy():
    from cocos_lib.models import load_policy
    path = toy.warmstart_path()
    assert sum(f.stat().st_size for f in path.iterdir()) < 5e6
    policy = load_policy("tiny-warmstart", dtype="fp32", device="cpu")
    done = policy.tokenizer.convert_tokens_to_ids("[DONE]")
    assert done in policy.eos_token_ids and policy.tokenizer.padding_side == "left"
    assert policy.model.config.num_hidden_layers <= 4 and policy.model.config.hidden_size <= 192


def greedy_summary(policy_dir, n=200):
    """Greedy 2-turn evaluation on held-out toy tasks (64 new tokens): summarize + eval_extras."""
    import torch
    from cocos_lib.evaluation.ablations import Sizes, evaluate_policy
    from cocos_lib.executor import Executor
    torch.manual_seed(0)
    with Executor(workers=2) as ex:
        r = evaluate_policy(str(policy_dir), W.toy_tasks("test", n=n), Sizes(max_new_tokens=64), ex)
    return {**r["summary"], **r["extra"]}


@pytest.fixture(scope="module")
def warmstart_summary():
    import torch
    torch.set_num_threads(1)
    return greedy_summary("tiny-warmstart")


KEYS = ("acc_t1", "acc_t2", "i2c", "c2i", "no_edit_rate", "unchanged_rate", "partial_wrong_t1")


@pytest.mark.slow
def test_warmstart_is_imperfect_and_reluctant_on_held_out_tasks(warmstart_summary):
    """The shipped warm-start is imperfect and reluctant (measured values in toy.py's docstring):
    turn 1 is right on 20-70% of the tasks, greedy turn 2 changes Acc by at most 2 points, leaves
    >= 90% of the answers unedited and repairs <= 5% of the problems; >= 80% of the wrong turn-1
    answers pass *some* tests (in the old K = 3 world the misconceptions passed none)."""
    s = warmstart_summary
    print({k: s[k] for k in KEYS})
    assert 0.20 <= s["acc_t1"] <= 0.70, s  # measured 0.505
    assert abs(s["acc_t2"] - s["acc_t1"]) <= 0.02 + 1e-9, s  # issue 5's "<= 2 points", met (0.505 -> 0.505)
    assert s["no_edit_rate"] >= 0.90 and s["i2c"] <= 0.05, s  # measured 1.0 and 0.0
    assert s["partial_wrong_t1"] >= 0.80, s  # measured 0.899: progressive reward in (0, 1), binary 0


@pytest.mark.slow
def test_warmstart_sampled_turn2_mostly_copies_a_misconception_and_sometimes_repairs_it():
    """The signal RL amplifies: at temperature 0.9 the warm-start's turn 2, shown the misconception
    of 40 toy-test tasks (4 samples each), copies it in 81% of the samples and repairs it (all
    tests pass) in 15% (measured, seed 0; the build's repair_rate is 0.15)."""
    import torch
    from cocos_lib.executor import Executor
    from cocos_lib.generation.dispatch import generate
    from cocos_lib.sampling import SamplingConfig
    from cocos_lib.models import load_policy
    from cocos_lib.prompts import build_prompt, extract_code
    from cocos_lib.rollout import decode_completion, encode_prompts, execute
    torch.set_num_threads(1)
    policy = load_policy("tiny-warmstart", dtype="fp32", device="cpu")
    tasks = [t for t in W.toy_tasks("test") if W.misconception(t)][:40]
    rows = [t for t in tasks for _ in range(4)]
    ids = encode_prompts(policy.tokenizer, [build_prompt(t, [W.misconception(t)]) for t in rows], None)
    outs = generate(policy, ids, SamplingConfig(max_new_tokens=64, temperature=0.9), seed=0)
    codes = [extract_code(decode_completion(policy, o)) for o in outs]
    with Executor(workers=2) as ex:
        reports = execute(ex, rows, codes, 3.0)
    copied = sum(c == W.misconception(t) for c, t in zip(codes, rows)) / len(rows)
    repaired = sum(r.all_passed for r in reports) / len(rows)
    print({"copied": copied, "repaired": repaired})
    assert copied >= 0.60 and 0.10 <= repaired <= 0.30, (copied, repaired)


@pytest.mark.slow
def test_short_cocos_run_improves_greedy_turn2_on_held_out_tasks(tmp_path, warmstart_summary):
    """A seeded, shortened `tiny` profile run: greedy Acc@t2 rises >= 10 points over the
    warm-start on held-out tasks, more wrong answers are repaired than broken, and hardly any
    right one is broken. (Measured: 6 updates took Acc@t2 from 0.47 to 0.745, i->c 27.5%,
    c->i 0%, with the previous warm-start and prompt layout; with the released layout's warm-start, 0.505 to 0.76,
    i->c 25%, c->i 0%.)"""
    from cocos_lib.config import make_config
    from cocos_lib.train import train
    history = train(make_config("tiny", updates=SHORT_UPDATES), tmp_path, progress=False)
    assert len(history) == SHORT_UPDATES and all(m["kl"] >= -1e-6 for m in history)
    after = greedy_summary(tmp_path / "final")
    print({k: after[k] for k in KEYS})
    assert after["acc_t2"] >= warmstart_summary["acc_t2"] + 0.10, (warmstart_summary, after)
    assert after["i2c"] > after["c2i"] and after["c2i"] <= 0.02, after


SHORT_UPDATES = 6


@pytest.mark.slow
def test_ablation_runner_writes_its_files(tmp_path):
    """1 update, 2 prompts, k = 2, 2 evaluation tasks, two settings, one seed: every promised file
    and key; a second call skips the finished runs (resumable)."""
    from cocos_lib.evaluation import ablations as A
    sizes = A.Sizes(updates=1, prompts_per_update=2, k=2, max_new_tokens=48, n_eval=2)
    out, work = tmp_path / "out", tmp_path / "work"
    agg = A.run_all(out, work, sizes, seeds=(0,), settings=("cocos", "indep-gamma0"), progress=False, command="x")
    meta = json.loads((out / "meta.json").read_text())
    assert set(meta) >= {"command", "sizes", "seeds", "settings", "runs", "versions", "eval_tasks"}
    assert set(meta["runs"]) == {"cocos/seed0", "indep-gamma0/seed0"} and meta["sizes"]["updates"] == 1
    assert meta["versions"]["torch"] and meta["command"] == "x"
    for setting in ("cocos", "indep-gamma0"):
        run = out / setting / "seed0"
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert len(rows) == 1 and set(rows[0]) <= set(A.HISTORY_KEYS)
        assert {"update", "reward_t1", "reward_t2", "kl", "equal_groups"} <= set(rows[0])
        blob = json.loads((run / "eval.json").read_text())
        assert blob["summary"]["n_tasks"] == 2 and {"acc_t1", "acc_t2", "i2c", "c2i", "unit_i2c"} <= set(blob["summary"])
        assert set(blob["extra"]) >= {"partial_wrong_t1", "unchanged_rate", "i2c_under_threshold"}
        assert blob["config"]["updates"] == 1 and blob["seed"] == 0
        assert not list(run.glob("*.safetensors"))  # no weights in the results
    assert json.loads((out / "indep-gamma0/seed0/eval.json").read_text())["config"]["gamma"] == 0.0
    assert set(agg) == {"untrained", "cocos", "indep-gamma0"}
    assert agg["cocos"]["acc_t2"]["n"] == 1 and agg["cocos"]["acc_t2"]["std"] == 0.0
    assert "| untrained |" in (out / "summary.md").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["settings"]) == set(agg) and "cocos - untrained" in summary["comparisons"]
    again = A.run_all(out, work, sizes, seeds=(0,), settings=("cocos",), progress=False)
    assert again["cocos"] == agg["cocos"]


def test_ablation_aggregate_and_table_from_hand_made_rows():
    from cocos_lib.evaluation import ablations as A
    agg = A.aggregate({"cocos": [{"acc_t2": 0.5}, {"acc_t2": 0.7}], "untrained": [{"acc_t2": 0.4}]}, keys=("acc_t2",))
    assert agg["cocos"]["acc_t2"] == pytest.approx({"mean": 0.6, "std": 0.1, "min": 0.5, "max": 0.7, "n": 2})
    table = A.markdown_table(agg, keys=("acc_t2",))
    assert table.splitlines()[2] == "| untrained | 1 | 40.0 |"
    assert table.splitlines()[3] == "| cocos | 2 | 60.0 ± 10.0 |"
    comp = A.compare(agg, keys=("acc_t2",))
    assert comp["cocos - untrained"]["acc_t2"] == pytest.approx({"diff": 0.2, "spread": 0.1, "separated": True})
    assert A.compare_table(comp, keys=("acc_t2",)).splitlines()[2] == "| cocos - untrained | +20.0 (10.0)* |"
    with pytest.raises(ValueError, match="unknown setting 'nope'"):
        A.run_all("/nonexistent", "/nonexistent", settings=("nope",))


def test_warmstart_lr_schedule_is_the_shipped_one():
    """The schedule the shipped checkpoint was trained with: warm-up x cosine over all steps, floor 0.05."""
    import math
    cfg = toy.WarmstartConfig()
    lr = [toy.warmstart_lr_factor(s, cfg) for s in range(cfg.steps)]
    assert lr[0] == 1 / 30 and lr[29] == 0.5 * (1 + math.cos(math.pi * 29 / 2000))
    assert lr[-1] == 0.05 and max(lr) == lr[29] and sum(x == 0.05 for x in lr) > 100


def test_sft_weights_train_turn1_never_on_a_turn2_prompts_attempt():
    """A turn-2 SFT example in the released layout shows the previous attempt after "[BEGIN]", as turn 1's
    answer is shown: its tokens (and the instruction's) take attempt_weight (0 by default), the task header
    prompt_weight, the target 1; position 0 has no prediction. A turn-1 example has no attempt region."""
    import random
    tok, cfg = toy.char_tokenizer(), toy.WarmstartConfig()
    task = next(t for t in W.toy_tasks("test") if W.misconception(t))
    prompt, target, header = toy.sft_example(task, 2, cfg, random.Random(0))
    assert prompt.startswith(header) and "[BEGIN]" in header and prompt.endswith("[CORRECT]\n")
    ids, mask, weights = toy._batch(tok, [(prompt, target, header)], prompt_weight=0.5, attempt_weight=0.0)
    n_h = len(tok(header, add_special_tokens=False)["input_ids"])
    n_p = len(tok(prompt, add_special_tokens=False)["input_ids"])
    n_t = len(tok(target, add_special_tokens=False)["input_ids"])
    w = weights[0].tolist()
    assert w[0] == 0 and set(w[1:n_h]) == {0.5} and set(w[n_h:n_p]) == {0.0} and set(w[n_p:n_p + n_t]) == {1.0}
    assert int(mask.sum()) == n_p + n_t
    prompt1, target1, header1 = toy.sft_example(task, 1, cfg, random.Random(0))
    assert prompt1 == header1 == header and target1 == f"{W.misconception(task)}\n[DONE]"
    _, _, w1 = toy._batch(tok, [(prompt1, target1, header1)], prompt_weight=0.5, attempt_weight=0.3)
    assert 0.3 not in set(w1[0].tolist())
