"""Chat prompting (instruct models): messages, template, pre-fill and stop at the closing fence,
extraction, and the option threaded through rollout, Self-Refine, evaluate, train and the study."""
import pytest

from cocos_lib import prompts
from cocos_lib.evaluation import baselines
from cocos_lib import rollout as R
from cocos_lib.evaluate import evaluate
from cocos_lib.executor import Executor
from cocos_lib.sampling import SamplingConfig, truncate_completion
from cocos_lib.prompts import CHAT_PREFILL, CORRECTION_INSTRUCTION, extract_answer, render_prompt
from cocos_lib.rollout import RolloutConfig, rollout
from cocos_lib.tasks import Task

ADD = Task("t/0", "Write a function to add two numbers.", ("assert add(1, 2) == 3", "assert add(0, 0) == 0"))
GOOD, BAD = "def add(a, b):\n    return a + b", "def add(a, b):\n    return a - b"


@pytest.fixture(scope="module")
def chat_policy(tiny_chat_policy_dir):
    """The tiny chat model (conftest.tiny_chat_policy_dir) loaded through load_policy."""
    from cocos_lib.models import load_policy
    return load_policy(tiny_chat_policy_dir, dtype="fp32", device="cpu")


@pytest.fixture(scope="module")
def executor():
    with Executor(workers=2) as ex:
        yield ex


def test_chat_prompt_turns(chat_policy):
    tok = chat_policy.tokenizer
    first = render_prompt(tok, ADD, [], "chat")
    assert first == (f"<|im_start|>system\n{prompts.CHAT_SYSTEM}<|im_end|>\n<|im_start|>user\n"
                     f"{prompts.task_statement(ADD)}<|im_end|>\n<|im_start|>assistant\n```python\n")
    second = render_prompt(tok, ADD, [BAD, GOOD], "chat")  # only the most recent attempt is shown
    assert second.startswith(first[:-len("<|im_start|>assistant\n```python\n")])
    assert second.endswith(f"<|im_start|>assistant\n```python\n{GOOD}\n```<|im_end|>\n<|im_start|>user\n"
                           f"{CORRECTION_INSTRUCTION}<|im_end|>\n<|im_start|>assistant\n```python\n")
    assert BAD not in second
    assert render_prompt(tok, ADD, [GOOD]) == prompts.build_prompt(ADD, [GOOD])  # completion: unchanged
    with pytest.raises(ValueError, match="prompt_format"):
        render_prompt(tok, ADD, [], "markdown")


def test_stop_and_extraction_give_the_code(chat_policy):
    tok = chat_policy.tokenizer
    assert prompts.answer_stop("chat", "[DONE]") == "```" and prompts.answer_stop("chat", None) is None
    assert prompts.answer_stop("completion", "[DONE]") == "[DONE]"
    ids = tok(GOOD + "\n```\n\nThis function adds the two numbers and returns the sum.<|im_end|>",
              add_special_tokens=False)["input_ids"]
    cut = truncate_completion(ids, tok, "```", [tok.eos_token_id])
    assert tok.decode(cut) == GOOD + "\n```" and len(cut) < len(ids)  # the prose is never generated
    assert extract_answer(tok.decode(cut), "chat") == GOOD
    assert extract_answer(GOOD + "\n    # ran out of tokens", "chat") == GOOD + "\n    # ran out of tokens"
    assert extract_answer("", "chat") == "" and extract_answer(None, "chat") == ""
    assert extract_answer("[BEGIN]\n" + GOOD + "\n[DONE]") == GOOD


def scripted(tok, log, answers):
    """Fake generate: records (prompt text, stop) and answers from `answers` in call order."""
    def fake(pol, prompt_ids, cfg, seed=None, backend="hf"):
        out = []
        for ids in prompt_ids:
            log.append((tok.decode(ids), cfg.stop))
            out.append(tok(answers[len(log) - 1], add_special_tokens=False)["input_ids"])
        return out
    return fake


def test_chat_rollout(chat_policy, executor, monkeypatch):
    log = []
    monkeypatch.setattr(R, "generate", scripted(chat_policy.tokenizer, log, [BAD + "\n```", GOOD + "\n```"]))
    cfg = RolloutConfig(turns=2, k=1, prompt_format="chat", sampling=SamplingConfig(greedy=True))
    assert cfg.answer_sampling.stop == "```"
    (tr,) = rollout(chat_policy, [ADD], cfg, executor)
    assert [t.code for t in tr.turns] == [BAD, GOOD] and tr.rewards == [0.5, 1.0]
    assert [stop for _, stop in log] == ["```", "```"]
    assert log[1][0].endswith(f"```python\n{BAD}\n```<|im_end|>\n<|im_start|>user\n{CORRECTION_INSTRUCTION}"
                              "<|im_end|>\n<|im_start|>assistant\n```python\n")
    with pytest.raises(ValueError, match="fewshot"):
        RolloutConfig(prompt_format="chat", fewshot="x")
    with pytest.raises(ValueError, match="prompt_format"):
        RolloutConfig(prompt_format="xml")


def test_chat_self_refine_uses_own_feedback(chat_policy, executor, monkeypatch):
    log = []
    answers = [BAD + "\n```", "It subtracts; it should add.", GOOD + "\n```"]
    monkeypatch.setattr(R, "generate", scripted(chat_policy.tokenizer, log, answers))
    cfg = RolloutConfig(turns=2, k=1, prompt_format="chat", sampling=SamplingConfig(greedy=True))
    trajs, fb = baselines.self_refine(chat_policy, [ADD], cfg, executor)
    n_fb = len(chat_policy.tokenizer(answers[1], add_special_tokens=False)["input_ids"])
    assert [t.code for t in trajs[0].turns] == [BAD, GOOD] and fb == [[(answers[1], n_fb)]]
    (critique, stop_c), (rewrite, stop_r) = log[1], log[2]
    assert stop_c is None and stop_r == "```"  # feedback ends at the model's end-of-turn token
    assert critique.endswith(f"{baselines.CRITIQUE_INSTRUCTION}<|im_end|>\n<|im_start|>assistant\n")
    assert rewrite.endswith(f"<|im_start|>assistant\nIt subtracts; it should add.<|im_end|>\n<|im_start|>user\n"
                            f"{baselines.REWRITE_INSTRUCTION}<|im_end|>\n<|im_start|>assistant\n{CHAT_PREFILL}")


def test_evaluate_chat_end_to_end(chat_policy, executor, tmp_path):
    kw = dict(turns=2, sampling=SamplingConfig(greedy=True, max_new_tokens=8), executor=executor,
              progress=False, cache=tmp_path)
    chat = evaluate(chat_policy, [ADD], prompt_format="chat", **kw)
    plain = evaluate(chat_policy, [ADD], **kw)
    assert len(list(tmp_path.glob("eval-*.jsonl"))) == 2  # the format is part of the cache key
    assert list(chat["turn"]) == [1, 2] and (chat["new_tokens"] <= 8).all()
    assert chat["text"].tolist() != plain["text"].tolist()
    from cocos_lib.evaluate import EvalConfigError
    with pytest.raises(EvalConfigError, match="prompt_format"):
        evaluate(chat_policy, [ADD], prompt_format="xml", **kw)


def test_cpu_profiles_use_chat():
    from cocos_lib.config import ConfigError, make_config
    from cocos_lib.notebook.profile import notebook_profile
    from cocos_lib.train import rollout_config
    cfg = make_config("cpu")
    assert (cfg.model, cfg.tasks, cfg.prompt_format, cfg.dtype, cfg.device) == (
        "qwen2.5-coder-0.5b-instruct", "mbpp-trainval", "chat", "auto", "cpu")
    assert cfg.lora_r > 0 and cfg.k == 4 and cfg.backend == "packed" and cfg.checkpoint_every == 1
    assert cfg.micro_batch % cfg.k == 0  # whole groups per micro-batch: rl_step's fused path (no extra forward)
    rc = rollout_config(cfg)
    assert rc.prompt_format == "chat" and rc.answer_sampling.stop == "```"
    assert rollout_config(make_config("cpu", stop_at_done=False)).answer_sampling.stop is None
    with pytest.raises(ConfigError, match="'fewshot'"):
        make_config("cpu", fewshot=3)
    with pytest.raises(ConfigError, match="'prompt_format'"):
        make_config("tiny", prompt_format="xml")
    nb = notebook_profile("cpu")
    assert nb.prompt_format == "chat" and nb.eval_kwargs()["prompt_format"] == "chat"
    assert nb.rollout_config().prompt_format == "chat" and nb.model == cfg.model


def test_study_turn_major_equals_evaluate(chat_policy, executor, tmp_path):
    """The resumable turn-major study gives evaluate()'s rows (simple prompting and Self-Refine)."""
    from cocos_lib.evaluation import study
    from cocos_lib.tasks import load_humaneval
    tasks = load_humaneval()[:3]
    sampling = SamplingConfig(greedy=True, max_new_tokens=6, batch_size=2)
    cfg = RolloutConfig(turns=3, k=1, share_first_turn=False, sampling=sampling, prompt_format="chat")
    cols = ["task_id", "turn", "code", "text", "correct", "new_tokens", "edit_distance", "feedback"]
    want = evaluate(chat_policy, tasks, turns=3, sampling=sampling, executor=executor, progress=False,
                    prompt_format="chat")
    path = tmp_path / "c.jsonl"
    study.run_method(chat_policy, tasks, cfg, executor, path, "cocos", turns=2, progress=False)
    study.run_method(chat_policy, tasks, cfg, executor, path, "cocos", turns=3, progress=False)  # extends
    got = study.rows_frame(path, tasks, 3)
    assert len(got) == 9 and got[cols].equals(want[cols])
    sr_want = evaluate(chat_policy, tasks, turns=2, sampling=sampling, executor=executor, progress=False,
                       prompt_format="chat", method="self-refine")
    sr_path = tmp_path / "sr.jsonl"
    study.run_method(chat_policy, tasks, cfg, executor, sr_path, "self-refine", 2, first_turn=study._done(path),
                     progress=False)
    assert study.rows_frame(sr_path, tasks, 2)[cols + ["method"]].equals(sr_want[cols + ["method"]])
    examples = study.pick_examples(got)
    assert all(e["kind"] for e in examples) and study.edit_histogram(got)["bins"][0] == 0


def test_run_study_writes_rows_meta_and_examples(chat_policy, tmp_path):
    """run_study end to end on a local model dir (2 tasks, 2 turns, Self-Refine); a second call resumes."""
    import json

    from cocos_lib.evaluation import study
    model_dir = chat_policy.model.name_or_path
    kw = dict(turns=2, sr_turns=2, limit=2, batch_size=2, chunk=2, max_new_tokens=4, threads=1, progress=False)
    meta = study.run_study(model_dir, tmp_path, argv=["--limit", "2"], **kw)
    rows = [json.loads(x) for x in (tmp_path / "study_cocos.jsonl").read_text().splitlines()]
    sr = [json.loads(x) for x in (tmp_path / "study_self_refine.jsonl").read_text().splitlines()]
    assert [(r["task_id"], r["turn"]) for r in rows] == [("HumanEval/0", 1), ("HumanEval/0", 2), ("HumanEval/1", 1),
                                                        ("HumanEval/1", 2)]
    assert {r["method"] for r in sr} == {"self-refine"} and [r["code"] for r in sr if r["turn"] == 1] == [
        r["code"] for r in rows if r["turn"] == 1]  # Self-Refine's turn 1 is simple prompting's
    assert meta["summary"]["cocos"]["n_tasks"] == 2 and meta["command"] == "python -m cocos_lib.evaluation.study --limit 2"
    assert json.loads((tmp_path / "study_meta.json").read_text())["turns"] == 2
    timing = (tmp_path / "study_timing.jsonl").read_text().splitlines()
    assert len(timing) == 2 + 1  # cocos turns 1, 2 and Self-Refine turn 2 (its turn 1 is copied)
    written = json.loads((tmp_path / "study_meta.json").read_text())
    (tmp_path / "study_meta.json").write_text(json.dumps({**written, "notes": ["run (1) was paused"]}))
    again = study.run_study(model_dir, tmp_path, argv=[], **kw)  # everything on disk: nothing generated again
    assert len((tmp_path / "study_timing.jsonl").read_text().splitlines()) == 3
    assert again["notes"] == ["run (1) was paused"] and again["commands"] == [meta["command"], again["command"]]
    assert isinstance(json.loads((tmp_path / "study_examples.json").read_text()), list)


def test_run_study_self_refine_on_a_subset(chat_policy, tmp_path):
    """sr_limit: simple prompting on every task, Self-Refine on the first N; the meta says so."""
    import json

    from cocos_lib.report import results
    from cocos_lib.evaluation import study
    kw = dict(turns=2, sr_turns=2, limit=3, batch_size=3, chunk=3, max_new_tokens=4, threads=1, progress=False)
    meta = study.run_study(chat_policy.model.name_or_path, tmp_path, argv=[], sr_limit=1, **kw)
    sr = [json.loads(x) for x in (tmp_path / "study_self_refine.jsonl").read_text().splitlines()]
    assert {r["task_id"] for r in sr} == {"HumanEval/0"} and meta["sr_tasks"] == 1
    assert meta["summary"]["cocos"]["n_tasks"] == 3 and meta["summary"]["self-refine"]["n_tasks"] == 1
    labels = list(results.study_table(meta).index)
    assert any(label.endswith("Self-Refine (first 1 tasks)") for label in labels), labels


def test_repeats_prompt_is_prompt_identity(chat_policy, executor, tmp_path):
    """repeats_prompt(df, t) is True exactly when the rendered prompt of turn t + 1 equals turn t's;
    greedy decoding then gives the answer that prompt gave before. Here turn 2's code is replaced by
    turn 1's on disk: turn 3 is then asked turn 2's question again and must give turn 2's real answer."""
    import json

    import pandas as pd

    from cocos_lib.evaluation import study
    from cocos_lib.tasks import load_humaneval
    tasks = load_humaneval()[:4]
    sampling = SamplingConfig(greedy=True, max_new_tokens=6, batch_size=4)
    cfg = RolloutConfig(turns=3, k=1, share_first_turn=False, sampling=sampling, prompt_format="chat")
    path = tmp_path / "c.jsonl"
    study.run_method(chat_policy, tasks, cfg, executor, path, "cocos", turns=2, progress=False)
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    first = {r["task_id"]: r["code"] for r in rows if r["turn"] == 1}
    real_t2 = {r["task_id"]: r["code"] for r in rows if r["turn"] == 2}
    assert study.repeats_prompt(study.rows_frame(path, tasks, 2), 2).sum() == sum(
        first[t] == real_t2[t] for t in first)
    copied = [dict(r, code=first[r["task_id"]]) if r["turn"] == 2 else r for r in rows]
    path.write_text("".join(json.dumps(r) + "\n" for r in copied))
    study.run_method(chat_policy, tasks, cfg, executor, path, "cocos", turns=3, progress=False)
    df = study.rows_frame(path, tasks, 3)
    assert study.repeats_prompt(df, 2).all()
    code = df.pivot(index="task_id", columns="turn", values="code")
    assert code[3].to_dict() == real_t2
    for task in tasks:  # the identity is the rendered prompt's
        assert (render_prompt(chat_policy.tokenizer, task, [code.loc[task.task_id, 2]], "chat")
                == render_prompt(chat_policy.tokenizer, task, [code.loc[task.task_id, 1]], "chat"))
    hand = pd.DataFrame({"task_id": ["a", "a", "b", "b"], "turn": [1, 2, 1, 2], "code": ["x", "x", "x", "y"]})
    assert study.repeats_prompt(hand, 2).to_dict() == {"a": True, "b": False}


def test_code_diff():
    """One line per line, also when a program has no final newline (lines are never run together)."""
    from cocos_lib.evaluation import study
    assert study.code_diff("x = 1\n", "x = 1\n") == ""
    want = ["--- turn 1", "+++ turn 2", "@@ -1,2 +1,2 @@", " x = 1", "-y = 2", "+y = 3"]
    assert study.code_diff("x = 1\ny = 2\n", "x = 1\ny = 3\n").splitlines() == want
    assert study.code_diff("x = 1\ny = 2", "x = 1\ny = 3").splitlines() == want
