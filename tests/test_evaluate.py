"""evaluate.py: rows and summary on hand-built trajectories, cache, CLI errors, end-to-end run."""
import json
import math
import subprocess
import sys
from types import SimpleNamespace as NS

import pytest

from cocos_lib import evaluate as E
from cocos_lib import metrics as M
from cocos_lib import prompts

P, F = "passed", "failed"


def _turn(code, outcomes, n_tokens=5):
    ok = all(o == P for o in outcomes)
    rep = NS(outcomes=tuple(outcomes), fraction=sum(o == P for o in outcomes) / len(outcomes),
             all_passed=ok, error=None if ok else "AssertionError")
    return NS(code=code, report=rep, reward=rep.fraction, completion_ids=[0] * n_tokens, text=code + "\n[DONE]")


def _traj(task_id, turns, sample=0):
    return NS(task=NS(task_id=task_id), sample=sample, turns=turns)


CODE_A = "def add(a, b):\n    return a + b\n"
CODE_B1, CODE_B2 = "def sub(a, b):\n    return a + b\n", "def sub(a, b):\n    return a - b\n"
CODE_C1, CODE_C2 = "def mul(a, b):\n    return a * b\n", "def mul(a, b):\n    r = 0\n    for _ in range(b):\n        r += a\n    return r\n"
CODE_D = "def div(a, b):\n    return a // b\n"

# A: c->c unchanged; B: i->c (count 1 -> 3) small edit; C: c->i (count 3 -> 2) big edit; D: i->i unchanged
TRAJS = [
    _traj("A", [_turn(CODE_A, [P, P, P]), _turn(CODE_A, [P, P, P], 7)]),
    _traj("B", [_turn(CODE_B1, [P, F, F]), _turn(CODE_B2, [P, P, P], 9)]),
    _traj("C", [_turn(CODE_C1, [P, P, P]), _turn(CODE_C2, [P, P, F], 11)]),
    _traj("D", [_turn(CODE_D, [F, F, F]), _turn(CODE_D, [F, F, F], 13)]),
]


@pytest.fixture
def df():
    return E._frame([r for tr in TRAJS for r in E.trajectory_rows(tr)])


def test_rows_hand_built(df):
    assert len(df) == 8 and df["turn"].tolist() == [1, 2] * 4
    assert df["task_id"].tolist() == ["A", "A", "B", "B", "C", "C", "D", "D"]
    t1 = df[df.turn == 1]
    assert t1["edit_distance"].isna().all() and t1["no_edit"].isna().all()
    b2 = df[(df.task_id == "B") & (df.turn == 2)].iloc[0]
    assert b2["edit_distance"] == pytest.approx(1 / len(CODE_B1)) and bool(b2["no_edit"])
    assert b2["n_passed"] == 3 and b2["correct"] and b2["new_tokens"] == 9
    for _, r in df.iterrows():
        assert r["correct"] == all(o == P for o in r["outcomes"])


def test_summarize_hand_built(df):
    s = E.summarize(df)
    assert s["n_tasks"] == 4 and s["turns"] == 2
    assert {k: s[k] for k in ("acc_t1", "acc_t2", "delta", "i2c", "c2i")} == pytest.approx(
        {"acc_t1": 0.5, "acc_t2": 0.5, "delta": 0.0, "i2c": 0.25, "c2i": 0.25})
    assert s["unit_i2c"] == 0.25 and s["unit_c2i"] == 0.25        # B rose, C fell
    assert s["unit_f2p"] == pytest.approx(2 / 12) and s["unit_p2f"] == pytest.approx(1 / 12)
    d_c = M.normalized_edit_distance(CODE_C1, CODE_C2)
    assert d_c > 0.05
    assert s["no_edit_rate"] == pytest.approx(3 / 4)               # A, B, D
    assert s["no_edit_rate_wrong"] == pytest.approx(1 / 2)         # wrong at t2: C (edited), D (not)
    assert s["mean_edit_distance"] == pytest.approx((0 + 1 / len(CODE_B1) + d_c + 0) / 4)
    assert s["t1_t2_c2c"] == 0.25 and s["t1_t2_i2i"] == 0.25 and s["gain_t2"] == 0.0
    assert s["mean_new_tokens_t1"] == 5 and s["mean_new_tokens_t2"] == 10
    assert not any(k.startswith("pass@") for k in s)
    assert E.accuracy_gains(df) == [0.0, 0.0]
    assert E.edit_distances(df) == {"answer wrong": [pytest.approx(d_c), 0.0],
                                    "answer right": [0.0, pytest.approx(1 / len(CODE_B1))]}


def test_summarize_three_turns_and_pass_at_k():
    trajs = []
    for sample, (o1, o2, o3) in enumerate([([F], [F], [P]), ([F], [P], [P]), ([F], [F], [F])]):
        trajs.append(_traj("X", [_turn("a", o1), _turn("b", o2), _turn("b", o3)], sample))
    trajs.append(_traj("Y", [_turn("c", [P]), _turn("c", [P]), _turn("c", [P])], 0))
    trajs.append(_traj("Y", [_turn("c", [P]), _turn("c", [F]), _turn("c", [F])], 1))
    trajs.append(_traj("Y", [_turn("c", [F]), _turn("c", [F]), _turn("c", [F])], 2))
    df = E._frame([r for tr in trajs for r in E.trajectory_rows(tr)])
    s = E.summarize(df)
    assert s["n_problems"] == 6 and s["acc_t1"] == pytest.approx(2 / 6)
    assert s["acc_t3"] == pytest.approx(3 / 6) and s["gain_t3"] == pytest.approx(1 / 6)
    assert s["t2_t3_i2c"] == pytest.approx(1 / 6) and s["t2_t3_c2i"] == 0.0
    # X: n=3, c=0 at t1 -> pass@3 0; Y: c=2 -> 1.  pass@1 = mean(0, 2/3)
    assert s["pass@1_t1"] == pytest.approx(1 / 3) and s["pass@3_t1"] == pytest.approx(0.5)
    assert s["pass@3_t3"] == pytest.approx(1.0)                    # X c=2, Y c=1
    assert list(E.transition_matrices(df)) == ["t1→t2", "t2→t3"]


def test_jsonl_roundtrip(df, tmp_path):
    path = E.write_rows(df, tmp_path / "rows.jsonl")
    lines = path.read_text().splitlines()
    assert len(lines) == 8
    first = json.loads(lines[0])
    assert first["edit_distance"] is None and first["outcomes"] == [P, P, P] and first["turn"] == 1
    back = E.read_rows(path)
    assert E.summarize(back) == E.summarize(df)


def test_cache_key_depends_on_settings():
    a = E.cache_key("m", ["1", "2"], {"turns": 2})
    assert a == E.cache_key("m", ["1", "2"], {"turns": 2})
    assert len({a, E.cache_key("m", ["1", "2"], {"turns": 3}), E.cache_key("m", ["1"], {"turns": 2}),
                E.cache_key("n", ["1", "2"], {"turns": 2})}) == 4


def test_evaluate_argument_errors():
    with pytest.raises(E.EvalConfigError, match="field 'turns': 5 is outside 1..4"):
        E.evaluate("unused", [], turns=5)
    with pytest.raises(E.EvalConfigError, match="greedy samples would be identical"):
        E.evaluate("unused", [], k=3)
    with pytest.raises(E.EvalConfigError, match="unknown method 'x'"):
        E.evaluate("unused", [], method="x")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "cocos_lib.evaluate", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("args, needle", [
    (["--policy", "x", "--tasks", "toy-test", "--turns", "5", "--out", "o.jsonl"], "--turns 5: must be in 1..4"),
    (["--policy", "x", "--tasks", "toy-test", "--turns", "0", "--out", "o.jsonl"], "--turns 0: must be in 1..4"),
    (["--policy", "x", "--tasks", "nope", "--out", "o.jsonl"], "unknown task set 'nope'"),
    (["--policy", "/no/such/dir", "--tasks", "toy-test", "--out", "o.jsonl"], "--policy /no/such/dir"),
    (["--policy", "no-such-model-xyz", "--tasks", "toy-test", "--out", "o.jsonl"], "model 'no-such-model-xyz'"),
    (["--tasks", "toy-test", "--out", "o.jsonl"], "the following arguments are required: --policy"),
    (["--policy", "x", "--tasks", "toy-test", "--out", "o.jsonl", "--method", "magic"], "invalid choice: 'magic'"),
])
def test_cli_bad_arguments(args, needle, tmp_path):
    r = _cli(*args)
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("cocos_lib.evaluate: error:")


def test_cli_help():
    r = _cli("--help")
    assert r.returncode == 0 and "--policy" in r.stdout and "--method" in r.stdout


# ------------------------------------------------------------------ Self-Refine prompt format

def _task():
    from cocos_lib.tasks import Task
    return Task("7", "Write a function to add two numbers.", ("assert add(1, 2) == 3", "assert add(0, 0) == 0"))


def test_self_refine_prompts():
    from cocos_lib.evaluation import baselines as B
    from cocos_lib import prompts
    task = _task()
    code = "def add(a, b):\n    return a - b"
    crit = B.critique_prompt(task, code)
    assert crit.startswith(prompts.task_header(task) + code + "\n[DONE]\n\n" + B.CRITIQUE_INSTRUCTION)
    assert crit.endswith("\n\n[FEEDBACK]\n")
    rw = B.rewrite_prompt(task, code, "It subtracts.", ending="begin")
    assert rw == crit + "It subtracts.\n[DONE]\n\n" + B.REWRITE_INSTRUCTION + "\n\n[BEGIN]\n"
    assert B.rewrite_prompt(task, code, "ok").endswith("Python program!\n\n[CORRECT]\n")
    assert B.extract_feedback(" [FEEDBACK] It subtracts instead of adding.\n[DONE]\ndef x(): pass") == \
        "It subtracts instead of adding."
    with pytest.raises(ValueError, match="unknown ending 'x'"):
        B.rewrite_prompt(task, code, "", ending="x")


# ------------------------------------------------------------------ end to end (tiny policy)

def _e2e_tasks():
    from cocos_lib.tasks import Task
    return [_task(),
            Task("8", "Write a function to negate a number.", ("assert neg(1) == -1", "assert 1 + 1 == 2")),
            Task("9", "Return True.", ("assert True",), setup="X = 1")]


def _check_rows(df, tasks, turns):
    from cocos_lib.executor import Executor, Job
    assert len(df) == len(tasks) * turns
    assert df.groupby("task_id")["turn"].apply(list).to_dict() == {t.task_id: list(range(1, turns + 1)) for t in tasks}
    by_id = {t.task_id: t for t in tasks}
    with Executor(workers=1) as ex:  # re-running each row's code gives the row's outcomes
        again = ex.run_many([Job(r["code"], by_id[r["task_id"]].tests, by_id[r["task_id"]].setup)
                             for _, r in df.iterrows()])
    prev = {}
    for (_, r), rep in zip(df.iterrows(), again):
        task = by_id[r["task_id"]]
        assert r["n_tests"] == len(task.tests) == len(r["outcomes"])
        assert r["n_passed"] == sum(o == "passed" for o in r["outcomes"])
        assert r["correct"] == (r["n_passed"] == r["n_tests"])
        assert r["pass_fraction"] == pytest.approx(r["n_passed"] / r["n_tests"])
        assert r["reward"] == pytest.approx(r["pass_fraction"])          # progressive reward
        assert list(rep.outcomes) == list(r["outcomes"])
        if r["turn"] == 1:
            assert math.isnan(r["edit_distance"])
        else:
            assert r["edit_distance"] == pytest.approx(M.normalized_edit_distance(prev[r["task_id"]], r["code"]))
            assert bool(r["no_edit"]) == (r["edit_distance"] <= 0.05)
        assert 1 <= r["new_tokens"] <= 24 * (2 if r["method"] == "self-refine" and r["turn"] > 1 else 1)
        prev[r["task_id"]] = r["code"]


def test_evaluate_end_to_end_with_cache(tiny_policy, tmp_path):
    from cocos_lib.sampling import SamplingConfig
    tasks = _e2e_tasks()
    cfg = SamplingConfig(greedy=True, max_new_tokens=24)
    df = E.evaluate(tiny_policy, tasks, turns=3, sampling=cfg, cache=tmp_path, progress=False, chunk=2)
    _check_rows(df, tasks, 3)
    assert (df["method"] == "cocos").all() and (df["feedback"] == "").all()
    files = list(tmp_path.glob("eval-*.jsonl"))
    assert len(files) == 1 and len(files[0].read_text().splitlines()) == 9
    # a cache hit needs no model: the policy's name is enough
    again = E.evaluate(tiny_policy.name, tasks, turns=3, sampling=cfg, cache=tmp_path, progress=False, chunk=2)
    assert again[["task_id", "turn", "code", "correct"]].equals(df[["task_id", "turn", "code", "correct"]])
    s = E.summarize(df)
    assert s["turns"] == 3 and s["acc_t3"] == pytest.approx(df[df.turn == 3]["correct"].mean())


def test_self_refine_end_to_end(tiny_policy):
    from cocos_lib.sampling import SamplingConfig
    tasks = _e2e_tasks()
    df = E.evaluate(tiny_policy, tasks, turns=2, sampling=SamplingConfig(greedy=True, max_new_tokens=24),
                    method="self-refine", progress=False)
    _check_rows(df, tasks, 2)
    assert (df["method"] == "self-refine").all()
    assert (df[df.turn == 1]["feedback"] == "").all()


def test_sampled_k_samples_pass_at_k(tiny_policy):
    from cocos_lib.sampling import SamplingConfig
    tasks = _e2e_tasks()
    cfg = SamplingConfig(greedy=False, temperature=1.0, max_new_tokens=12)
    df = E.evaluate(tiny_policy, tasks, turns=2, k=2, sampling=cfg, progress=False, seed=3)
    assert len(df) == 3 * 2 * 2 and sorted(df["sample"].unique()) == [0, 1]
    s = E.summarize(df)
    assert s["n_problems"] == 6 and s["n_tasks"] == 3
    for t in (1, 2):
        per = df[df.turn == t].groupby("task_id")["correct"].sum()
        assert s[f"pass@1_t{t}"] == pytest.approx(per.mean() / 2)
        assert s[f"pass@2_t{t}"] == pytest.approx((per > 0).mean())


def _stop_before_output(policy, tasks, **kw):
    raise KeyboardInterrupt  # stop before writing output


@pytest.mark.parametrize("task_set, n", [("toy-test", 0), ("toy-test", 2), ("humaneval", 1), ("mbpp-test", 3)])
def test_cli_fewshot_uses_fewshot_for(tiny_policy_dir, task_set, n):
    """--fewshot N with --tasks NAME: the block evaluate() gets is fewshot_for(NAME, N) (what fewshot_for picks per
    task set: tests/test_prompts.py); the collaborators are passed in, no module is patched."""
    seen = {}

    def record(policy, tasks, **kw):
        seen.update(kw, policy=policy)
        raise KeyboardInterrupt  # stop before writing output

    with pytest.raises(KeyboardInterrupt):
        E.main(["--policy", tiny_policy_dir, "--tasks", task_set, "--out", "unused.jsonl", "--fewshot", str(n)],
               tasks_of=lambda name: [_task()], load=lambda *a, **kw: "policy",
               fewshot_of=lambda name, k: f"{name}:{k}", run=record)
    assert seen["policy"] == "policy" and seen["fewshot"] == f"{task_set}:{n}"


def test_cli_fewshot_too_many_is_one_line(tiny_policy_dir):
    r = _cli("--policy", tiny_policy_dir, "--tasks", "toy-test", "--out", "o.jsonl", "--fewshot", "4")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == ("cocos_lib.evaluate: error: --fewshot 4: prompts: field 'n': "
                                "4 few-shot examples requested, 3 available")


def test_cli_accepts_a_train_run_directory(tiny_policy_dir, tmp_path):
    """#15: --policy RUN_DIR (what train wrote: config.json = a TrainConfig, final/, checkpoint/model) loads
    final/, else the last checkpoint's model; a run dir with neither is one line."""
    import shutil
    loaded = []

    def main(args):
        return E.main(args, tasks_of=lambda name: [_task()], load=lambda path, fmt, **kw: loaded.append(path) or "policy",
                      run=_stop_before_output)

    run = tmp_path / "run"
    (run / "checkpoint").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"model": "tiny-warmstart", "updates": 3}))  # not a model config
    (run / "metrics.jsonl").write_text("")
    args = ["--policy", str(run), "--tasks", "toy-test", "--out", str(tmp_path / "o.jsonl")]
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2 and loaded == []
    shutil.copytree(tiny_policy_dir, run / "checkpoint" / "model")
    with pytest.raises(KeyboardInterrupt):
        main(args)
    shutil.copytree(tiny_policy_dir, run / "final")
    with pytest.raises(KeyboardInterrupt):
        main(args)
    assert loaded == [str(run / "checkpoint" / "model"), str(run / "final")]
    assert E.run_model_dir(tiny_policy_dir) is None and E.run_model_dir("Qwen/Qwen2.5-1.5B") is None


def test_run_dir_without_model_is_one_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("")
    r = _cli("--policy", str(tmp_path), "--tasks", "toy-test", "--out", str(tmp_path / "o.jsonl"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "is a training run directory without a model yet" in r.stderr


def test_transition_metrics_is_importable_from_evaluate():
    """DESIGN.md contract: transition_metrics lives in metrics.py and is importable from evaluate."""
    from cocos_lib.evaluate import transition_metrics
    assert transition_metrics is M.transition_metrics and "transition_metrics" in E.__all__
    assert transition_metrics([True, False, False], [True, True, False]) == pytest.approx(
        {"acc_t1": 1 / 3, "acc_t2": 2 / 3, "delta": 1 / 3, "i2c": 1 / 3, "c2i": 0.0})


def test_paired_differences_on_hand_built_rows():
    """Two models on 4 tasks: the trained one repairs task c at turn 2 and edits it; differences by hand."""
    import pandas as pd
    from cocos_lib.summary import paired_differences

    def rows(correct):  # correct: {task: (t1, t2, edit distance at t2)}
        out = []
        for task, (c1, c2, d) in correct.items():
            out += [dict(task_id=task, sample=0, turn=1, correct=c1, edit_distance=float("nan")),
                    dict(task_id=task, sample=0, turn=2, correct=c2, edit_distance=d)]
        return pd.DataFrame(out)
    base = rows({"a": (True, True, 0.0), "b": (False, False, 0.0), "c": (False, False, 0.0), "d": (True, True, 0.0)})
    trained = rows({"a": (True, True, 0.0), "b": (False, False, 0.3), "c": (False, True, 0.4), "d": (True, True, 0.0)})
    got = paired_differences(base, trained, n_boot=500)
    assert got["acc_t1"]["diff"] == 0 and got["acc_t1"]["lo"] == got["acc_t1"]["hi"] == 0
    assert (got["acc_t2"]["before"], got["acc_t2"]["after"], got["acc_t2"]["diff"]) == (0.5, 0.75, 0.25)
    assert got["i2c"]["diff"] == 0.25 and got["c2i"]["diff"] == 0.0
    assert (got["no_edit_rate"]["before"], got["no_edit_rate"]["after"]) == (1.0, 0.5)
    assert got["acc_t2"]["lo"] == 0.0 and got["acc_t2"]["hi"] in (0.5, 0.75)   # one repair in 4 tasks: wide


def test_one_table_of_how_methods_produce_turns():
    """evaluate dispatches on methods.TURNS (one signature) instead of branching on the method and format."""
    from cocos_lib import methods
    assert set(methods.TURNS) == {*E.METHODS, "release"}
    assert methods.producer("cocos") is methods.cocos_turns
    assert methods.producer("self-refine") is methods.self_refine_turns
    assert methods.producer("cocos", "release") is methods.release_turns
    assert methods.producer("self-refine", "chat") is methods.self_refine_turns
def _stopping_cli(seen):
    """E.main with stand-ins: one toy task, no model load, and an evaluate that records its keywords and stops
    before writing output."""
    def run(policy, tasks, **kw):
        seen.update(kw)
        raise KeyboardInterrupt
    return lambda args: E.main(args, tasks_of=lambda name: [_task()], load=lambda *a, **kw: "policy", run=run)


def test_cli_run_dir_uses_the_run_prompt_settings(tiny_policy_dir, tmp_path):
    """#21 item 6: --policy RUN_DIR evaluates with the prompts the run trained on (config.json: fewshot,
    ending, prompt_format, extraction); a flag given on the command line wins."""
    import shutil
    seen = {}
    cli = _stopping_cli(seen)
    run = tmp_path / "run"
    shutil.copytree(tiny_policy_dir, run / "final")
    (run / "metrics.jsonl").write_text("")
    (run / "config.json").write_text(json.dumps({"model": "x", "fewshot": 2, "ending": "begin",
                                                 "prompt_format": "completion", "extraction": "release"}))
    args = ["--policy", str(run), "--tasks", "toy-test", "--out", str(tmp_path / "o.jsonl")]
    with pytest.raises(KeyboardInterrupt):
        cli(args)
    assert (seen["ending"], seen["extraction"], seen["prompt_format"]) == ("begin", "release", "completion")
    assert seen["fewshot"] == prompts.fewshot_block(n=2)
    with pytest.raises(KeyboardInterrupt):
        cli(args + ["--fewshot", "0", "--ending", "correct", "--extraction", "lenient"])
    assert (seen["fewshot"], seen["ending"], seen["extraction"]) == ("", "correct", "lenient")
    assert E.run_prompt_settings(tiny_policy_dir) == {}   # a model dir is not a run dir


def test_cli_truncated_weights_are_one_line(tiny_policy_dir, tmp_path):
    """#21 item 9: a cut final/model.safetensors: one line naming the file and what to do, no traceback."""
    import shutil
    run = tmp_path / "run"
    shutil.copytree(tiny_policy_dir, run / "final")
    (run / "metrics.jsonl").write_text("")
    f = run / "final" / "model.safetensors"
    f.write_bytes(f.read_bytes()[:f.stat().st_size // 2])
    r = _cli("--policy", str(run), "--tasks", "toy-test", "--out", str(tmp_path / "o.jsonl"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert f"{f}: damaged or truncated (" in r.stderr and "delete its final/ to evaluate the last checkpoint" in r.stderr
    assert E.damaged_weights(tiny_policy_dir) is None
