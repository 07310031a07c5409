"""Memory and process-count caps on one worker's whole tree (cgroup v2, else v1).

The parent makes one cgroup per worker generation under its own (v2: one directory with
memory.max, memory.swap.max, pids.max; v1: one in the memory and one in the pids hierarchy),
W moves itself in first thing, and whatever it forks inherits it: the judge, the candidates,
their children, and the tmpfs pages they write to /tmp. The cap is for all of them together
(memory_mb plus HEADROOM for W and the judge); W and the namespace's init set oom_score_adj
-1000, so the kernel's OOM killer picks a candidate. The parent removes the directories once
the worker is gone; if the parent itself is killed they stay behind (empty, harmless).
"""
import errno, os, time

HEADROOM = 96 << 20


def mounts():
    """{controller: mount point} of the cgroup hierarchies ("" for cgroup2)."""
    found = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            fstype, _, options = right.split()[:3]
            point = left.split()[4]
            if fstype == "cgroup2":
                found.setdefault("", point)
            elif fstype == "cgroup":
                for opt in options.split(","):
                    found.setdefault(opt, point)
    return found


def own_path(controller):
    """This process's cgroup path in the hierarchy of `controller` ("" for cgroup2)."""
    with open("/proc/self/cgroup") as f:
        for line in f:
            hid, ctrls, path = line.rstrip("\n").split(":", 2)
            if (controller == "" and hid == "0") or (controller and controller in ctrls.split(",")):
                return path
    return None


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def _make(dirs, settings):
    made = []
    try:
        for d in dirs:
            os.mkdir(d)
            made.append(d)
        for path, text, optional in settings:
            if not (optional and not os.path.exists(path)):
                _write(path, text)
        return made, None
    except OSError as e:
        remove(made, wait_s=0)
        return [], f"{e.strerror} ({e.filename})"


def create(name, memory_bytes, pids):
    """(directories, None) of a fresh cgroup capped at memory_bytes and pids, or ([], why not)."""
    points = mounts()
    v2 = points.get("")
    if v2 is not None and own_path("") is not None:
        base = v2 + own_path("").rstrip("/")
        try:
            with open(os.path.join(base, "cgroup.subtree_control")) as f:
                enabled = f.read().split()
        except OSError:
            enabled = []
        if "memory" in enabled and "pids" in enabled:
            d = os.path.join(base, name)
            return _make([d], [(f"{d}/memory.max", str(memory_bytes), False), (f"{d}/memory.swap.max", "0", True),
                               (f"{d}/pids.max", str(pids), False)])
    if "memory" in points and "pids" in points and own_path("memory") is not None and own_path("pids") is not None:
        mem = points["memory"] + own_path("memory").rstrip("/") + "/" + name
        pid = points["pids"] + own_path("pids").rstrip("/") + "/" + name
        return _make([mem, pid], [(f"{mem}/memory.limit_in_bytes", str(memory_bytes), False),
                                  (f"{mem}/memory.memsw.limit_in_bytes", str(memory_bytes), True),
                                  (f"{pid}/pids.max", str(pids), False)])
    return [], "no cgroup hierarchy with both the memory and the pids controller is writable here"


def join(dirs):
    """Move the calling process into each directory (before it forks anything)."""
    for d in dirs:
        _write(os.path.join(d, "cgroup.procs"), str(os.getpid()))


def remove(dirs, wait_s=3.0):
    """rmdir each directory, retrying while its last processes exit; the ones left."""
    end = time.monotonic() + wait_s
    left = list(dirs)
    while True:
        for d in list(left):
            try:
                os.rmdir(d)
                left.remove(d)
            except FileNotFoundError:
                left.remove(d)
            except OSError as e:
                if e.errno != errno.EBUSY:
                    left.remove(d)
        if not left or time.monotonic() > end:
            return left
        time.sleep(0.02)
