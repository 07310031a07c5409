"""release_run.py and evaluate(prompt_format="release"): tiny local models stand in for the hub names
(release_run.STAND_INS), and every socket connection fails the test: the hub is never contacted."""
import json
import shutil
import socket
from types import SimpleNamespace as NS

import pytest

from cocos_lib import evaluate as E
from cocos_lib.release import authors as release
from cocos_lib.release import pipeline as release_run
from cocos_lib.task_sets import load_tasks
from cocos_lib.tasks import Task, load_humaneval

CKPT, BASE = "Jay-Cho/CoCoS-Qwen2.5-1.5B", "Qwen/Qwen2.5-1.5B"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def chatty_warmstart(tmp_path_factory):
    """The shipped toy policy, changed into what a base model looks like to the release: its markers
    are plain text (not special tokens), and its own end token is no longer EOS, so after [DONE]
    it keeps writing until max_new_tokens."""
    from cocos_lib.toy.warmstart import warmstart_path
    out = tmp_path_factory.mktemp("chatty") / "policy"
    shutil.copytree(warmstart_path(), out)
    tj = json.loads((out / "tokenizer.json").read_text())
    for tok in tj["added_tokens"]:
        tok["special"] = tok["content"] not in ("[BEGIN]", "[DONE]", "[CORRECT]")
    unk = next(t["id"] for t in tj["added_tokens"] if t["content"] == "<unk>")
    (out / "tokenizer.json").write_text(json.dumps(tj))
    for name, changes in (("tokenizer_config.json", dict(extra_special_tokens=[], eos_token="<unk>")),
                          ("config.json", dict(eos_token_id=unk)), ("generation_config.json", dict(eos_token_id=unk))):
        data = json.loads((out / name).read_text())
        data.update(changes)
        (out / name).write_text(json.dumps(data))
    return str(out)


def test_source_and_stand_ins(monkeypatch):
    assert release_run.source(CKPT) == CKPT
    monkeypatch.setitem(release_run.STAND_INS, CKPT, "/tmp/tiny")
    assert release_run.source(CKPT) == "/tmp/tiny" and release_run.source(BASE, {}) == BASE


class _Emb:
    def __init__(self, rows):
        self.weight = NS(shape=(rows, 8))


class _Model:
    def __init__(self, rows):
        self.emb, self.resized = _Emb(rows), []
        self.config, self.generation_config = NS(pad_token_id=None), NS(pad_token_id=None)

    def get_input_embeddings(self):
        return self.emb

    def resize_token_embeddings(self, n):
        self.resized.append(n)


class _Tok:
    """The ids of the real tokenizers (their vocab sizes: Qwen2.5 151,665 tokens, embeddings 151,936)."""
    def __init__(self, vocab, n):
        self.vocab, self.n, self.pad_token, self.unk_token, self.unk_token_id = vocab, n, None, None, None

    def convert_tokens_to_ids(self, token):
        return self.vocab.get(token)

    def __len__(self):
        return self.n


@pytest.mark.parametrize("name, vocab, n, rows, pad, resized", [
    ("Qwen/Qwen2.5-1.5B", {"<|endoftext|>": 151643}, 151665, 151936, 151643, [151665]),
    ("Jay-Cho/CoCoS-Llama-3.2-1B", {"<|finetune_right_pad_id|>": 128004}, 128256, 128256, 128004, []),
    ("deepseek-ai/deepseek-coder-1.3b-base", {"<｜end▁of▁sentence｜>": 32014}, 32022, 32256, 32014, [32022]),
    ("gpt2", {"<|endoftext|>": 50256}, 50257, 50257, None, []),
])
def test_configure_padding_per_family(name, vocab, n, rows, pad, resized):
    policy = NS(tokenizer=_Tok(vocab, n), model=_Model(rows))
    assert release_run.configure_padding(policy, name) == pad
    assert policy.model.config.pad_token_id == pad and policy.model.generation_config.pad_token_id == pad
    assert policy.model.resized == resized
    if pad is not None:
        assert policy.tokenizer.pad_token == release.PAD_TOKENS[release.family(name)][0]


def test_load_stand_ins_set_the_family_pad(monkeypatch, tiny_policy_dir, tiny_policy_dir_multitoken):
    monkeypatch.setitem(release_run.STAND_INS, CKPT, tiny_policy_dir_multitoken)
    monkeypatch.setitem(release_run.STAND_INS, "Jay-Cho/CoCoS-Llama-3.2-1B", tiny_policy_dir)
    qwen = release_run.load(CKPT, dtype="fp32", device="cpu")
    assert qwen.tokenizer.pad_token == "<|endoftext|>" and qwen.model.config.pad_token_id == qwen.tokenizer.pad_token_id
    llama = release_run.load("Jay-Cho/CoCoS-Llama-3.2-1B", dtype="fp32", device="cpu")
    assert llama.tokenizer.pad_token == llama.tokenizer.eos_token  # the tiny vocab has no Llama pad: load_policy's
    assert llama.model.config._attn_implementation in ("sdpa", "eager")   # never FlashAttention-2


def test_sampling_and_truncation(tiny_policy):
    cfg = release_run.sampling()
    assert (cfg.greedy, cfg.max_new_tokens, cfg.batch_size, cfg.stop) == (True, 512, 8, None)
    assert release_run.sampling(stop_at_done=True, batch_size=32).stop == "[DONE]"
    text = release.prompt(load_humaneval()[0])
    full = release_run.encode(tiny_policy.tokenizer, [text], max_tokens=10 ** 6)[0]
    cut = release_run.encode(tiny_policy.tokenizer, [text], max_tokens=20)[0]
    assert len(full) > 20 and cut == full[:20]          # the first tokens are kept, as released


def test_rollout_prompts_are_the_release_strings(tiny_policy):
    from cocos_lib.executor import Executor
    tasks = load_humaneval()[:2] + [Task("MBPP/9", "Add.", ("assert f(1) == 2",), reference="def f(x):\n  return x + 1",
                                         source="mbpp")]
    with Executor(workers=1) as ex:
        trajs = release_run.released_rollout(tiny_policy, tasks, 3, release_run.sampling(batch_size=3, max_new_tokens=12), ex,
                                    fewshot="SHOTS\n\n")
    tok = tiny_policy.tokenizer
    for tr in trajs:
        assert len(tr.turns) == 3
        for t, turn in enumerate(tr.turns):
            wanted = release.prompt(tr.task, [u.code for u in tr.turns[:t]], "SHOTS\n\n")
            assert tok.decode(turn.prompt_ids, clean_up_tokenization_spaces=False) == wanted
            assert turn.code == release.extract(release_run.decode(tok, turn.completion_ids), tr.task)
            assert turn.reward == turn.report.fraction
    assert tok.decode(trajs[2].turns[0].prompt_ids).startswith("SHOTS\n\nYou are")     # MBPP: the block on turn 1


def test_evaluate_release_format_end_to_end_with_cache(monkeypatch, tmp_path, tiny_policy_dir_multitoken):
    monkeypatch.setitem(release_run.STAND_INS, CKPT, tiny_policy_dir_multitoken)
    tasks = load_humaneval()[:3]
    kw = dict(turns=2, sampling=release_run.sampling(batch_size=3, max_new_tokens=10), prompt_format="release",
              cache=tmp_path, progress=False)
    df = E.evaluate(CKPT, tasks, **kw)
    assert len(df) == 6 and df["turn"].tolist() == [1, 2] * 3 and set(df["method"]) == {"cocos"}
    assert (df["new_tokens"] <= 10).all()
    files = list(tmp_path.glob("eval-*.jsonl"))
    assert len(files) == 1
    assert E.evaluate(CKPT, tasks, **kw)[["task_id", "turn", "code"]].equals(df[["task_id", "turn", "code"]])
    with pytest.raises(E.EvalConfigError, match="field 'prompt_format': unknown format 'plain'"):
        E.evaluate(CKPT, tasks, prompt_format="plain")
    with pytest.raises(E.EvalConfigError, match="the release format has no 'self-refine' prompts"):
        E.evaluate(CKPT, tasks, prompt_format="release", method="self-refine")


def test_stopping_at_done_keeps_every_extracted_code(monkeypatch, chatty_warmstart):
    """Extraction keeps only the text before the first [DONE], so stopping there changes no code and no verdict."""
    monkeypatch.setitem(release_run.STAND_INS, CKPT, chatty_warmstart)
    tasks = load_tasks("toy-test")[:4]
    runs = {stop: E.evaluate(CKPT, tasks, turns=2, prompt_format="release", progress=False,
                             sampling=release_run.sampling(batch_size=4, max_new_tokens=96, stop_at_done=stop))
            for stop in (False, True)}
    cols = ["task_id", "turn", "code", "correct", "n_passed"]
    assert runs[True][cols].equals(runs[False][cols])
    assert (runs[False]["new_tokens"] == 96).all()                 # no EOS: every row runs to max_new_tokens
    assert (runs[True]["new_tokens"] < 96).all()                   # ... or stops right after its [DONE]
    assert runs[True]["text"].str.endswith("[DONE]").all() and runs[True]["code"].str.startswith("def ").all()


def test_fewshot_for_released_models(tmp_path):
    rows = [dict(task_id=i, text=f"Task {i}.", code=f"def f{i}():\r\n    return {i}", test_list=[f"assert f{i}() == {i}"],
                 test_setup_code="", challenge_test_list=[]) for i in range(1, 11)]
    path = tmp_path / "mbpp.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    block = release_run.fewshot_for(BASE, "mbpp-test", path=path)
    assert block.startswith("You are an expert Python programmer, and here is your task: Task 2. Your code")
    assert block.count("[DONE]\n\n") == 3 and "Task 4." in block and "Task 5." not in block
    assert "def f2():\n    return 2\n[DONE]" in block                       # CRLF of the MBPP file normalised
    assert release_run.fewshot_for(CKPT, "mbpp-test", path=path) == ""     # checkpoints: no few-shot
    assert release_run.fewshot_for(BASE, "humaneval", path=path) == ""     # HumanEval: never
    assert release_run.fewshot_for(CKPT, "mbpp-test", 1, path=path).count("[DONE]") == 1
    with pytest.raises(ValueError, match="10 few-shot examples requested, 9 available"):
        release_run.fewshot_for(BASE, "mbpp-test", 10, path=path)


def test_plans():
    colab, paper = release_run.plan("colab"), release_run.plan("paper")
    assert (colab.pairs, colab.turns, colab.batch_size, colab.stop_at_done) == (("Qwen2.5-1.5B",), 2, 32, True)
    assert (len(paper.pairs), paper.turns, paper.batch_size, paper.stop_at_done) == (3, 4, 8, False)
    assert release_run.plan("tiny") == colab
    runs = release_run.plan("paper", pairs=["Llama-3.2-1B"], limit=10).runs()
    assert [(r[1], r[2], r[3]) for r in runs] == [
        ("mbpp-test", "base", "meta-llama/Llama-3.2-1B"), ("mbpp-test", "CoCoS", "Jay-Cho/CoCoS-Llama-3.2-1B"),
        ("humaneval", "base", "meta-llama/Llama-3.2-1B"), ("humaneval", "CoCoS", "Jay-Cho/CoCoS-Llama-3.2-1B")]
    assert release_run.plan("paper", limit=10).n_tasks("mbpp-test") == 10 and paper.n_tasks("humaneval") == 164
    with pytest.raises(release.ReleaseError):
        release_run.plan("colab", pairs=("gpt2",))


def test_cli_release_format(monkeypatch, tmp_path, capsys, tiny_policy_dir_multitoken):
    monkeypatch.setitem(release_run.STAND_INS, CKPT, tiny_policy_dir_multitoken)
    seen = {}
    real = E.evaluate

    def spy(policy, tasks, **kw):
        seen.update(kw)
        return real(policy, tasks, **kw)

    out = tmp_path / "rows.jsonl"
    summary = E.main(["--policy", CKPT, "--tasks", "humaneval", "--limit", "2", "--turns", "2", "--format", "release",
                      "--max-new-tokens", "8", "--out", str(out), "--no-progress", "--device", "cpu"], run=spy)
    assert summary["format"] == "release" and summary["turns"] == 2 and summary["n_tasks"] == 2
    assert seen["prompt_format"] == "release" and seen["fewshot"] == ""
    assert (seen["sampling"].batch_size, seen["sampling"].stop, seen["sampling"].greedy) == (8, None, True)
    assert len(out.read_text().splitlines()) == 4
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["format"] == "release"


def test_cli_stop_at_done_needs_release_format(tiny_policy_dir):
    with pytest.raises(SystemExit) as exit_info:
        E.main(["--policy", tiny_policy_dir, "--tasks", "toy-test", "--out", "o.jsonl", "--stop-at-done"])
    assert exit_info.value.code == 2
