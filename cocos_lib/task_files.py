"""Reading task data files: JSON lines and JSON arrays with the line of every object, and one-line errors
"<file>:<line>: field '<name>': <problem>" (`TaskFormatError`) for whatever is wrong in them."""
from __future__ import annotations

import gzip
import json
import os


class TaskFormatError(ValueError):
    """Bad task data; the message reads "<file>:<line>: field '<name>': <problem>"."""


def format_error(file, line, field, problem) -> TaskFormatError:
    return TaskFormatError(f"{file}:{line}: field '{field}': {problem}")


def _read_text(path) -> str:
    if not os.path.isfile(path):
        raise format_error(path, 0, "path", "no such file")
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return f.read()


def _check_object(obj, file, line):
    if not isinstance(obj, dict):
        raise format_error(file, line, "json", f"expected a JSON object, got {type(obj).__name__}")
    return obj


def read_jsonl(path) -> list[tuple[int, dict]]:
    """(line number, object) per non-blank line of a .jsonl(.gz) file."""
    rows = []
    for i, line in enumerate(_read_text(path).split("\n"), 1):  # not splitlines(): U+2028 may sit in strings
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise format_error(path, i, "json", f"malformed JSON line ({e.msg}, column {e.colno})") from None
        rows.append((i, _check_object(obj, path, i)))
    return rows


def read_json_array(path) -> list[tuple[int, dict]]:
    """(line number where the object starts, object) per element of a JSON array file."""
    text, dec = _read_text(path), json.JSONDecoder()

    def line_of(pos):
        return text.count("\n", 0, pos) + 1

    def skip(pos):
        while pos < len(text) and text[pos].isspace():
            pos += 1
        return pos

    i = skip(0)
    if text[i:i + 1] != "[":
        raise format_error(path, line_of(i), "json", "expected a JSON array of task objects")
    rows, i = [], skip(i + 1)
    while text[i:i + 1] != "]":
        try:
            obj, end = dec.raw_decode(text, i)
        except json.JSONDecodeError as e:
            raise format_error(path, e.lineno, "json", f"malformed JSON ({e.msg}, column {e.colno})") from None
        rows.append((line_of(i), _check_object(obj, path, line_of(i))))
        i = skip(end)
        if text[i:i + 1] == ",":
            i = skip(i + 1)
        elif text[i:i + 1] != "]":
            raise format_error(path, line_of(i), "json", "malformed JSON (expected ',' or ']')")
    if skip(i + 1) != len(text):
        raise format_error(path, line_of(skip(i + 1)), "json", "malformed JSON (extra data after the array)")
    return rows


def get_field(row, name, kind, file, line):
    """Field `name` of `row`, checked to be `kind` ("str", "int" or "list[str]")."""
    if name not in row:
        raise format_error(file, line, name, "missing field")
    v = row[name]
    ok = {"str": isinstance(v, str), "int": isinstance(v, int) and not isinstance(v, bool),
          "list[str]": isinstance(v, list) and all(isinstance(x, str) for x in v)}[kind]
    if not ok:
        raise format_error(file, line, name, f"expected {kind}, got {type(v).__name__} {v!r:.40}")
    return v
