"""The sandbox worker and its parts: stdlib only, no cocos_lib import (see worker.py).

frames (length-prefixed frames), codec (plain data + strict parser), proctree (find/kill/reap),
confine (namespaces, uids, rlimits), rootfs (the stdlib-only root), cgroups (memory/pids caps),
analysis (what a test reads), stateless (whether a program's calls can leave state behind),
judge (Z and J: the trusted verdict), channel (J's requests to the candidate, its Handles,
write-back), exceptions (the candidate's exceptions in J), child (C and T_i: candidate side),
candidate (W's handle on C + J), zygote (W's handles on Z and J), budget (a phase's CPU and
wall-clock deadline), worker (W: run_job, main), launch (the entry script).
"""
