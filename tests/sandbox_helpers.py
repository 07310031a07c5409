"""Helpers for the sandbox tests: find processes on this side by marker, uid or parentage."""
import os


def descendants(pid=None):
    """Live descendants of this process, by a full /proc scan (ppid links)."""
    parent = {}
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                parent[int(name)] = int(fields[1])
        except (OSError, ValueError, IndexError):
            pass
    out, todo = set(), [pid or os.getpid()]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out.update(kids)
        todo += kids
    return out


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
