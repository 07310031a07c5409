"""Task loaders: HumanEval splitting (all 164 canonical solutions), MBPP files, every error."""
import ast
import gzip
import json
import os
import subprocess
import sys
import types
from concurrent.futures import ThreadPoolExecutor

import pytest

from cocos_lib.toy import world as toy_world
from cocos_lib.task_sets import load_tasks
from cocos_lib.task_files import TaskFormatError, read_jsonl
from cocos_lib.tasks import (Task, humaneval_path, load_humaneval, load_mbpp, mbpp_split_of,
                             split_check)

# One subprocess per task: for each (code, test) pair, exec setup + "\n" + code in a fresh
# namespace, then the test; print the outcomes as JSON (True = passed).
RUNNER = r"""
import json, sys
jobs = json.load(sys.stdin)
out = []
for setup, code, tests in jobs:
    res = []
    for t in tests:
        ns = {"__name__": "__main__"}
        try:
            exec(compile(setup + "\n" + code, "<program>", "exec"), ns)
            exec(compile(t, "<test>", "exec"), ns)
            res.append(True)
        except BaseException:
            res.append(False)
    out.append(res)
print(json.dumps(out))
"""


def run_programs(jobs, timeout=60):
    """jobs: list of (setup, code, tests) -> list of per-test pass lists (one subprocess)."""
    p = subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps(jobs), capture_output=True,
                       text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def humaneval():
    return load_humaneval()


@pytest.fixture(scope="module")
def raw_humaneval():
    return [row for _, row in read_jsonl(humaneval_path())]


def wrong_solution(ep):
    return f"def {ep}(*args, **kwargs):\n    return None\n"


@pytest.mark.slow
def test_all_164_canonical_solutions_pass_and_wrong_ones_fail(humaneval):
    """Through the real executor: program = setup + "\n" + code, then each test on its own."""
    from cocos_lib.executor import Executor, Job

    assert len(humaneval) == 164
    jobs = [Job(t.reference, t.tests, t.setup, 10.0) for t in humaneval]
    jobs += [Job(wrong_solution(t.entry_point), t.tests, t.setup, 10.0) for t in humaneval]
    with Executor(workers=2) as ex:
        reports = ex.run_many(jobs)
    ref, wrong = reports[:164], reports[164:]
    assert [(t.task_id, r.error) for t, r in zip(humaneval, ref) if not r.all_passed] == []
    assert [len(r.outcomes) for r in ref] == [len(t.tests) for t in humaneval]
    assert [t.task_id for t, r in zip(humaneval, wrong) if r.all_passed] == []
    assert sum(r.n_passed for r in wrong) < sum(len(t.tests) for t in humaneval) // 4


@pytest.mark.slow
def test_canonical_solutions_in_plain_subprocesses(humaneval):
    """Independent of the executor: one plain subprocess per 8 tasks, fresh namespace per test."""
    chunks = [humaneval[i:i + 8] for i in range(0, 164, 8)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda ts: run_programs([(t.setup, t.reference, list(t.tests)) for t in ts]), chunks))
    flat = [r for chunk in results for r in chunk]
    assert [t.task_id for t, r in zip(humaneval, flat) if not all(r)] == []


def test_test_count_equals_assert_statements_on_the_candidate(humaneval, raw_humaneval):
    for task, row in zip(humaneval, raw_humaneval):
        check = next(s for s in ast.parse(row["test"]).body if getattr(s, "name", "") == "check")
        expected = sum(1 for s in check.body if any(isinstance(n, ast.Assert) for n in ast.walk(s))
                       and "candidate" in {n.id for n in ast.walk(s) if isinstance(n, ast.Name)})
        assert len(task.tests) == expected >= 1, task.task_id
        assert all("candidate" not in t for t in task.tests)
        assert task.reference == row["prompt"] + row["canonical_solution"]
    assert sum(len(t.tests) for t in humaneval) == 1133


def test_humaneval_0_exact_fields(humaneval):
    t = humaneval[0]
    assert (t.task_id, t.entry_point, t.source) == ("HumanEval/0", "has_close_elements", "humaneval")
    assert t.text == ("Write a function `has_close_elements(numbers: List[float], threshold: float) -> bool` "
                      "for this problem.\nCheck if in given list of numbers, are any two numbers closer to "
                      "each other than\ngiven threshold.")
    assert len(t.tests) == 7
    assert t.tests[0] == "assert has_close_elements([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True"
    assert t.setup == "from typing import List\nMETADATA = {\n    'author': 'jt',\n    'dataset': 'test'\n}"


def test_humaneval_loops_helpers_and_constant_asserts(humaneval):
    by_id = {t.task_id: t for t in humaneval}
    t32 = by_id["HumanEval/32"]                       # one loop holding the assert = one test
    assert len(t32.tests) == 1 and t32.tests[0].startswith("for _ in range(100):\n    ncoeff")
    assert "def poly(xs: list, x: float):" in t32.setup and "rng = random.Random(42)" in t32.setup
    assert "`poly(xs: list, x: float)`" in t32.text
    t53 = by_id["HumanEval/53"]                       # 5 asserts + 1 loop
    assert len(t53.tests) == 6 and t53.tests[5].startswith("for i in range(100):")
    t115 = by_id["HumanEval/115"]                     # `assert True, ...` goes to setup
    assert len(t115.tests) == 5 and t115.setup.count("assert True") == 2
    assert "Example 1:" in t115.text                  # docstring after `import math` is found
    t151 = by_id["HumanEval/151"]                     # plain statements after asserts -> setup
    assert "odd_sum = sum(" in t151.setup and t151.tests[-1].startswith("assert double_the_difference(lst)")
    assert ">>>" not in by_id["HumanEval/53"].text


CHECK = '''
import math
def check(candidate):
    import math
    assert candidate(1) == 2
    r = candidate(2)
    assert r == 3
    assert r > 0 and math.sqrt(4) == 2
    assert True
    x = 5
    assert candidate(x) == 6, "msg with candidate in it"
'''


def test_split_check_runs_candidate_dependent_statements_after_the_code():
    setup, tests = split_check(CHECK, "inc")
    assert setup == ["import math", "import math", "assert True", "x = 5"]
    assert tests == ["assert inc(1) == 2", "r = inc(2)\nassert r == 3",
                     "r = inc(2)\nassert r > 0 and math.sqrt(4) == 2",
                     'r = inc(2)\nassert inc(x) == 6, "msg with candidate in it"']
    good = "def inc(n):\n    return n + 1"
    res = run_programs([("\n".join(setup), good, tests), ("\n".join(setup), "def inc(n):\n    return n", tests)])
    assert res == [[True, True, True, True], [False, False, True, False]]


def write_humaneval(tmp_path, rows, gz=True):
    path = tmp_path / ("he.jsonl.gz" if gz else "he.jsonl")
    data = "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n"
    if gz:
        with gzip.open(path, "wt") as f:
            f.write(data)
    else:
        path.write_text(data)
    return str(path)


HE_ROW = {"task_id": "X/0", "prompt": "def inc(n):\n    \"\"\"Add one.\n    >>> inc(1)\n    2\n    \"\"\"\n",
          "canonical_solution": "    return n + 1\n", "test": CHECK, "entry_point": "inc"}


def test_humaneval_local_file_and_errors(tmp_path):
    (t,) = load_humaneval(write_humaneval(tmp_path, [HE_ROW]))
    assert t.text == "Write a function `inc(n)` for this problem.\nAdd one." and len(t.tests) == 4
    p = write_humaneval(tmp_path, [HE_ROW, {k: v for k, v in HE_ROW.items() if k != "entry_point"}], gz=False)
    with pytest.raises(TaskFormatError, match=r"he\.jsonl:2: field 'entry_point': missing field$"):
        load_humaneval(p)
    p = write_humaneval(tmp_path, [dict(HE_ROW, test="def helper(candidate):\n    assert candidate(1)\n")])
    with pytest.raises(TaskFormatError, match=r"he\.jsonl\.gz:1: field 'test': expected exactly one `def check"):
        load_humaneval(p)
    p = write_humaneval(tmp_path, [dict(HE_ROW, test="def check(candidate):\n    assert True\n")])
    with pytest.raises(TaskFormatError, match=r":1: field 'test': check\(\) holds no assert on the candidate"):
        load_humaneval(p)
    p = write_humaneval(tmp_path, [dict(HE_ROW, entry_point="dec")])
    with pytest.raises(TaskFormatError, match=r":1: field 'entry_point': prompt defines no function 'dec'"):
        load_humaneval(p)


# ---------------------------------------------------------------- MBPP
def mbpp_row(tid, **kw):
    row = {"text": f"Write a function to add {tid}.", "code": f"def add_{tid}(x):\r\n    return x + {tid}",
           "task_id": tid, "test_setup_code": "", "test_list": [f"assert add_{tid}({k}) == {k + tid}" for k in range(3)],
           "challenge_test_list": []}
    row.update(kw)
    return row


def write_jsonl(tmp_path, rows, name="mbpp.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return str(path)


IDS = [1, 2, 10, 11, 510, 511, 600, 601, 974]


def test_mbpp_full_splits_by_task_id(tmp_path):
    path = write_jsonl(tmp_path, [mbpp_row(i) for i in IDS])
    got = {s: [t.task_id for t in load_mbpp(s, "full", path)] for s in ("prompt", "test", "validation", "train")}
    assert got == {"prompt": ["MBPP/1", "MBPP/2", "MBPP/10"], "test": ["MBPP/11", "MBPP/510"],
                   "validation": ["MBPP/511", "MBPP/600"], "train": ["MBPP/601", "MBPP/974"]}
    assert [mbpp_split_of(i) for i in (0, 1, 10, 11, 975)] == [None, "prompt", "prompt", "test", None]
    t = load_mbpp("test", path=str(tmp_path))[0]                 # a folder works too
    assert t == Task("MBPP/11", "Write a function to add 11.", ("assert add_11(0) == 11", "assert add_11(1) == 12",
                     "assert add_11(2) == 13"), "", "add_11", "def add_11(x):\n    return x + 11", "mbpp")
    assert load_tasks("mbpp-validation", path=path)[1].task_id == "MBPP/600"


def test_mbpp_setup_code_and_challenge_tests(tmp_path):
    row = mbpp_row(12, test_setup_code="import math\r\nK = 2", challenge_test_list=["assert add_12(K) == 14"])
    path = write_jsonl(tmp_path, [row])
    (plain,) = load_mbpp("test", path=path)
    (hard,) = load_mbpp("test", path=path, challenge=True)
    assert plain.setup == "import math\nK = 2" and len(plain.tests) == 3
    assert hard.tests == plain.tests + ("assert add_12(K) == 14",)
    assert run_programs([(hard.setup, hard.reference, list(hard.tests))]) == [[True] * 4]


def test_mbpp_sanitized_variant(tmp_path):
    rows = [{"source_file": "x", "task_id": i, "prompt": f"Add {i}.", "code": f"def f(x):\n    return x + {i}",
             "test_imports": ["import math", "import re"], "test_list": [f"assert f(1) == {i + 1}"]} for i in (2, 17, 700)]
    path = tmp_path / "sanitized-mbpp.json"
    path.write_text(json.dumps(rows, indent=1))
    assert [t.task_id for t in load_mbpp("test", "sanitized", str(path))] == ["MBPP/17"]
    (t,) = load_mbpp("train", "sanitized", str(tmp_path))
    assert (t.text, t.setup, t.tests, t.source, t.entry_point) == (
        "Add 700.", "import math\nimport re", ("assert f(1) == 701",), "mbpp-sanitized", "f")
    assert load_mbpp("validation", "sanitized", str(path)) == []


def error_of(fn):
    with pytest.raises(TaskFormatError) as e:
        fn()
    return str(e.value)


def test_mbpp_every_error_message(tmp_path):
    def f(rows):
        return write_jsonl(tmp_path, rows)

    missing = str(tmp_path / "nope.jsonl")
    assert error_of(lambda: load_mbpp("test", path=missing)) == f"{missing}:0: field 'path': no such file"
    p = f([mbpp_row(11), '{"task_id": 12, "text": ', mbpp_row(13)])
    assert error_of(lambda: load_mbpp("test", path=p)).startswith(f"{p}:2: field 'json': malformed JSON line (")
    p = f([mbpp_row(11), "[1, 2]"])
    assert error_of(lambda: load_mbpp("test", path=p)) == f"{p}:2: field 'json': expected a JSON object, got list"
    row = mbpp_row(11)
    del row["test_list"]
    p = f([mbpp_row(12), "", row])                               # blank lines still count
    assert error_of(lambda: load_mbpp("test", path=p)) == f"{p}:3: field 'test_list': missing field"
    p = f([mbpp_row(12, task_id="12")])
    assert error_of(lambda: load_mbpp("test", path=p)) == f"{p}:1: field 'task_id': expected int, got str '12'"
    p = f([mbpp_row(12, test_list=["assert f(1)", 3])])
    assert "field 'test_list': expected list[str], got list" in error_of(lambda: load_mbpp("test", path=p))
    p = f([mbpp_row(12, challenge_test_list=None)])               # validated even when not appended
    assert error_of(lambda: load_mbpp("test", path=p)) == f"{p}:1: field 'challenge_test_list': expected list[str], got NoneType None"
    p = f([mbpp_row(12, test_list=[])])
    assert error_of(lambda: load_mbpp("test", path=p)) == f"{p}:1: field 'test_list': no tests"
    p = f([mbpp_row(12), mbpp_row(975)])                         # rows of other splits are checked too
    assert error_of(lambda: load_mbpp("test", path=p)) == f"{p}:2: field 'task_id': task_id 975 is outside every split range (1-974)"
    p = f([mbpp_row(12), mbpp_row(700), mbpp_row(12)])
    assert error_of(lambda: load_mbpp("test", path=p)) == f"{p}:3: field 'task_id': duplicate task_id 12 (first on line 1)"
    p = f([mbpp_row(12)])
    assert error_of(lambda: load_mbpp("dev", path=p)) == (
        f"{p}:0: field 'split': unknown split 'dev' (expected one of prompt, test, validation, train)")
    assert error_of(lambda: load_mbpp("test", "tiny", p)) == (
        f"{p}:0: field 'variant': unknown variant 'tiny' (expected one of full, sanitized)")
    assert error_of(lambda: load_mbpp("dev")) == (
        "hf:google-research-datasets/mbpp:0: field 'split': unknown split 'dev' (expected one of prompt, test, validation, train)")


def test_sanitized_json_errors(tmp_path):
    path = tmp_path / "sanitized-mbpp.json"
    good = {"task_id": 11, "prompt": "p", "code": "c", "test_imports": [], "test_list": ["assert 1"]}
    path.write_text("[\n" + json.dumps(good) + ",\n" + json.dumps({k: v for k, v in good.items() if k != "prompt"}) + "\n]")
    assert error_of(lambda: load_mbpp("test", "sanitized", str(path))) == f"{path}:3: field 'prompt': missing field"
    path.write_text("[\n" + json.dumps(good) + ",\n {\"task_id\": 12,,}\n]")
    assert error_of(lambda: load_mbpp("test", "sanitized", str(path))).startswith(f"{path}:3: field 'json': malformed JSON (")
    path.write_text(json.dumps(good))
    assert error_of(lambda: load_mbpp("test", "sanitized", str(path))) == (
        f"{path}:1: field 'json': expected a JSON array of task objects")
    path.write_text("[" + json.dumps(good) + "] x")
    assert error_of(lambda: load_mbpp("test", "sanitized", str(path))) == (
        f"{path}:1: field 'json': malformed JSON (extra data after the array)")
    path.write_text("[\n" + json.dumps(good) + "\n" + json.dumps(good) + "]")
    assert error_of(lambda: load_mbpp("test", "sanitized", str(path))) == (
        f"{path}:3: field 'json': malformed JSON (expected ',' or ']')")


def test_mbpp_hub_path_maps_rows_without_network(monkeypatch, tmp_path):
    """A cached copy (datasets cache dir of the config) loads in offline mode; an uncached config goes
    online once the hub answers; the offline flag is restored after both."""
    from cocos_lib import hub
    calls = []
    fake = types.ModuleType("datasets")
    fake.config = types.SimpleNamespace(HF_DATASETS_CACHE=str(tmp_path), HF_HUB_OFFLINE=False)
    fake.naming = types.SimpleNamespace(camelcase_to_snakecase=lambda name: name)
    (tmp_path / "google-research-datasets___mbpp" / "full" / "0.0.0" / "abc123").mkdir(parents=True)
    fake.load_dataset = lambda name, config, split: (calls.append((name, config, split, fake.config.HF_HUB_OFFLINE))
                                                     or [mbpp_row(601), mbpp_row(602)])
    monkeypatch.setitem(sys.modules, "datasets", fake)
    monkeypatch.setattr(hub, "hub_reachable", lambda *a: pytest.fail("probed the hub for a cached dataset"))
    tasks = load_mbpp("train", challenge=True, path="hub")
    assert calls == [("google-research-datasets/mbpp", "full", "train", True)] and fake.config.HF_HUB_OFFLINE is False
    assert [t.task_id for t in tasks] == ["MBPP/601", "MBPP/602"] and tasks[0].reference == "def add_601(x):\n    return x + 601"
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hub, "hub_reachable", lambda *a: True)  # sanitized is not cached: online
    fake.load_dataset = lambda name, config, split: (calls.append(fake.config.HF_HUB_OFFLINE) or
                                                     [{"task_id": 2, "prompt": "p", "code": "c", "test_list": ["assert 1"]}])
    assert error_of(lambda: load_mbpp("prompt", "sanitized")) == (
        "hf:google-research-datasets/mbpp/sanitized/prompt:1: field 'test_imports': missing field")
    assert calls[1:] == [False]


NO_HUB = r"""
import sys, time
t = time.perf_counter()
try:
    from cocos_lib.tasks import load_mbpp
    load_mbpp("test", path="hub")
except ConnectionError as e:
    print(f"{time.perf_counter() - t:.2f}")
    print(f"{type(e).__name__}: {e}")
"""


@pytest.mark.parametrize("offline_flag", [True, False])
def test_mbpp_hub_without_cache_or_network_fails_at_once_in_one_line(tmp_path, offline_flag):
    """Real no-network run (empty HF cache, hub endpoint on a closed local port): one line, < 5 s, no
    `datasets` retries (they took ~23 s), with HF_HUB_OFFLINE=1 (no probe) and without (one probe)."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT="http://127.0.0.1:9", **({"HF_HUB_OFFLINE": "1"} if offline_flag else {}))
    out = subprocess.run([sys.executable, "-c", NO_HUB], capture_output=True, text=True, env=env, timeout=60)
    assert out.stderr == "" and out.returncode == 0
    seconds, line = out.stdout.strip().split("\n")
    assert float(seconds) < 5.0
    assert line == ("HubUnavailableError: mbpp: dataset 'google-research-datasets/mbpp' not in the local cache and the "
                    "hub is unreachable (connect to the internet, or pass path= a local mbpp.jsonl from google-research)")


def test_unicode_line_separator_inside_a_json_string_is_not_a_new_line(tmp_path):
    p = tmp_path / "mbpp.jsonl"
    p.write_text(json.dumps(mbpp_row(11, text="a\u2028b"), ensure_ascii=False) + "\n", encoding="utf-8")
    assert load_mbpp("test", path=str(p))[0].text == "a\u2028b"


def test_load_tasks_registry(monkeypatch):
    assert [t.task_id for t in load_tasks("humaneval")[:2]] == ["HumanEval/0", "HumanEval/1"]
    calls = []
    monkeypatch.setattr(toy_world, "toy_tasks", lambda split, **kw: calls.append((split, kw)) or ["task"])
    assert load_tasks("toy-test", n=5) == ["task"] and calls == [("test", {"n": 5})]
    assert error_of(lambda: load_tasks("mbpp-dev")).startswith(
        "<load_tasks>:0: field 'name': unknown task set 'mbpp-dev' (expected one of mbpp-train,")


def test_mbpp_full_loads_offline_from_the_vendored_original(monkeypatch):
    """No path: the vendored google-research file (no hub probe at all), the paper's split sizes, a real row."""
    from cocos_lib import hub
    monkeypatch.setattr(hub, "hub_reachable", lambda *a: pytest.fail("probed the hub for the vendored MBPP"))
    sizes = {s: len(load_mbpp(s)) for s in ("prompt", "test", "validation", "train")}
    assert sizes == {"prompt": 10, "test": 500, "validation": 90, "train": 374}
    t = load_mbpp("test")[0]
    assert t.task_id == "MBPP/11" and t.entry_point == "remove_Occ" and len(t.tests) == 3


def test_mbpp_vendored_copy_is_refused_when_its_hash_differs(tmp_path):
    from cocos_lib.tasks import VENDORED_MBPP, verified_mbpp
    assert verified_mbpp() == VENDORED_MBPP
    cut = tmp_path / "mbpp.jsonl"
    cut.write_bytes(open(VENDORED_MBPP, "rb").read()[:1000])       # truncated
    msg = error_of(lambda: verified_mbpp(str(cut)))
    assert msg.startswith(f"{cut}: sha256 ") and "is not the vendored MBPP's 143559fa1644" in msg
    assert error_of(lambda: verified_mbpp(str(tmp_path / "gone.jsonl"))).startswith(f"{tmp_path / 'gone.jsonl'}: the vendored")
