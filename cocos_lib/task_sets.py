"""The task sets by name: the one list (`TASK_SETS`) and the one loader (`load_tasks`).

A registry above the loaders: MBPP and HumanEval come from `cocos_lib.tasks`, the toy world's
sets from `cocos_lib.toy.world`; neither loader module imports this one.
"""
from __future__ import annotations

from cocos_lib import tasks
from cocos_lib.toy import world as toy_world
from cocos_lib.task_files import TaskFormatError

TASK_SETS = ("mbpp-train", "mbpp-test", "mbpp-validation", "mbpp-prompt", "mbpp-trainval", "humaneval",
             "humaneval-release", "toy-train", "toy-test")


def load_tasks(name: str, **kw) -> list[tasks.Task]:
    """Tasks by name (TASK_SETS); keyword arguments go to the loader."""
    if name == "mbpp-trainval":  # train (374) + validation (90): the `cpu` profile's training tasks
        return tasks.load_mbpp(split="train", **kw) + tasks.load_mbpp(split="validation", **kw)
    if name.startswith("mbpp-") and name in TASK_SETS:
        return tasks.load_mbpp(split=name[5:], **kw)
    if name == "humaneval":
        return tasks.load_humaneval(**kw)
    if name == "humaneval-release":  # the release's HumanEval text, "Write a python function {entry_point}."
        return tasks.load_humaneval(text="release", **kw)
    if name in ("toy-train", "toy-test"):
        return toy_world.toy_tasks(name[4:], **kw)
    raise TaskFormatError(f"<load_tasks>:0: field 'name': unknown task set {name!r} "
                          f"(expected one of {', '.join(TASK_SETS)})")
