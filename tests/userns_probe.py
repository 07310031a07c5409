"""Run by tests/test_sandbox_userns.py as an unprivileged uid: python -I userns_probe.py DIR.

DIR holds a copy of cocos_lib's executor (stdlib only) and jobs.json (canonical HumanEval
solutions, paths that exist on this side). Prints one JSON object of what it saw: the mode
and layers, the canonical results, and the outcome of each hostile program."""
import json, os, socket, sys

HERE = sys.argv[1]
sys.path.insert(0, HERE)
from cocos_lib.executor import Executor, Job  # noqa: E402  (HERE on sys.path first)
from hostile_programs import FORGE  # noqa: E402

KNOCK = """import errno, socket
def knock(port, name):
    out = []
    for fam, addr in ((socket.AF_INET, ('127.0.0.1', port)), (socket.AF_UNIX, '\\0' + name)):
        s = socket.socket(fam)
        s.settimeout(2)
        try:
            s.connect(addr)
            out.append('connected')
        except OSError as e:
            out.append(errno.errorcode.get(e.errno, str(e)))
    return out
"""
PEEK = """import os
def visible(paths):
    out = []
    for p in paths:
        try:
            out.append((p, os.listdir(p) if os.path.isdir(p) else open(p, 'rb').read(1)))
        except OSError:
            pass
    return out
"""
PROCS = """import ctypes, errno, os, signal
libc = ctypes.CDLL(None, use_errno=True)
def pids():
    return sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
def caps():
    lines = open('/proc/self/status').read().splitlines()
    pairs = (line.split(':', 1) for line in lines)
    return sorted((k, v.split()[0]) for k, v in pairs if k in ('CapEff', 'CapPrm', 'CapBnd', 'Uid'))
def attack_init():
    out = []
    if libc.ptrace(16, 1, None, None) != 0:      # PTRACE_ATTACH to the namespace's init
        out.append(errno.errorcode[ctypes.get_errno()])
    os.kill(1, signal.SIGKILL)                  # an init ignores what it has no handler for
    return out
"""
DAEMON = """import os, sys
def add(a, b):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', MARK])
        os._exit(0)
    return a + b
"""


def host_marked(mark):
    found = []
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if mark.encode() in f.read():
                    found.append(int(name))
        except OSError:
            pass
    return found


def main():
    spec = json.load(open(os.path.join(HERE, "jobs.json")))
    out = {"uid": os.getuid(), "readable_here": all(os.path.exists(p) for p in spec["paths"])}
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind("\0" + spec["mark"])
    abstract.listen(4)
    port = listener.getsockname()[1]
    with Executor(workers=2) as ex:
        out["tmp"] = ex._pool.cfg["tmp"]
        d = ex.describe()
        out["describe"] = {k: d[k] for k in ("mode", "active", "required", "separation")}
        out["missing"] = sorted(d["missing"])
        reports = ex.run_many([Job(*job) for job in spec["canonical"]])
        out["canonical"] = [len(reports), sum(r.all_passed for r in reports), sum(r.all_trusted for r in reports)]
        r = ex.run(FORGE, ["assert add(1, 2) == 3", "assert add(2, 2) == 4"])
        out["forge"] = [r.outcomes, r.trusted]
        r = ex.run(FORGE, ["assert add(1, 2) == 3 and add.__name__ == 'add'"])
        out["forge_untrusted"] = [r.outcomes, r.trusted]
        r = ex.run(KNOCK, [f"assert False, knock({port}, {spec['mark']!r})"])
        out["network"] = r.error
        r = ex.run(PEEK, [f"assert False, visible({spec['paths']!r})"])
        out["files"] = r.error
        r = ex.run("import gzip", [f"gzip.open({spec['answer_key']!r}).read(1)"])
        out["answer_key"] = r.error
        tests = ["assert False, (len(pids()), pids()[0], caps())", "assert False, attack_init()",  # (in C)
                 "import os\nps = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
                 "assert False, (len(ps), ps[0])"]  # (the judge's own view: no candidate name in it)
        out["procs"] = [r.error for r in ex.run_many([Job(PROCS, [t]) for t in tests])]
        fresh = [Job(f"open('f{i}', 'w').write('{i}')", [f"import os\nassert os.listdir('/tmp') == ['f{i}']"])
                 for i in range(4)]  # (a trusted test: the judge sees each job's fresh /tmp)
        out["judge_tmp"] = [r.outcomes + r.trusted for r in ex.run_many(fresh)]
        r = ex.run(f"MARK = {spec['mark']!r}\n" + DAEMON, ["assert add(1, 2) == 3", "assert add(2, 2) == 4"])
        out["daemon"] = [r.outcomes, host_marked(spec["mark"])]
    out["left"] = [host_marked(spec["mark"]), os.path.exists(out["tmp"])]
    try:
        Executor(workers=1, disable=("userns",))
        out["refused"] = None
    except RuntimeError as e:
        out["refused"] = str(e)
    print(json.dumps(out))


main()
