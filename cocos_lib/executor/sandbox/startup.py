"""The worker's start: W confines itself before it serves any job (worker.py serves them).

In order: join the cgroup (cgroups.py); choose the mode and, without root, enter a user
namespace (userns.py); unshare the mount, UTS, network and pid namespaces (confine.py); fill the
stdlib-only root (rootfs.py); fork the candidates' pid namespace init Zc, which mounts its /proc
into that root; pivot into the root; make the judge's pid namespace with its own init Zj. From
then on W's children are born in the candidates' namespace; the judge is forked into its own
(worker.py). Every step that fails leaves its layer missing, with the reason, in the hello.
"""
import os, sys

from . import cgroups, confine, proctree, rootfs, userns


def fd_paths():
    """Without a root of its own, a dropped uid may be unable to enter the interpreter's dirs
    (/root/.pyenv): keep each import dir open and import via /proc/self/fd/N (no ancestor
    check), for sys.path and for the packages already imported (encodings: 'a'.encode('idna'))."""
    opened = {}
    top = 5
    for p in sys.path:
        if os.path.isdir(p):
            top = os.open(p, os.O_PATH | os.O_DIRECTORY)
            opened[p] = f"/proc/self/fd/{top}"
    sys.path[:] = [opened.get(p, p) for p in sys.path]
    for mod in list(sys.modules.values()):
        paths = getattr(mod, "__path__", None)
        if type(paths) is list:
            paths[:] = [next((v + p[len(k):] for k, v in opened.items() if p.startswith(k + "/")), p) for p in paths]
    return top + 1  # the first fd C and J close: these stay open in them


def start(cfg):
    """Confine this process; (host /proc view, inits, judge's and candidates' pid namespace fds,
    layers, mode, an fd of its cgroup's cpu.stat or None)."""
    skip = set(cfg["disable"])
    mode = userns.choose_mode(cfg["uid"] is not None, skip)
    layers = {name: "disabled by the configuration" for name in confine.MODE_LAYERS[mode] if name in skip}
    if "cgroup" not in skip:
        layers["cgroup"] = cfg["cgroup_missing"]
        if cfg["cgroup"]:
            try:
                cgroups.join(cfg["cgroup"])
            except OSError as e:
                layers["cgroup"] = f"joining the cgroup failed: {e.strerror}"
    confine.write_oom_adj(-1000)
    if mode == "root" and "uid" not in skip:
        layers["uid"] = cfg["uid_missing"] if cfg["uid"] is None else (
            confine.probe_uid(cfg["uid"], cfg["uid"]) or confine.probe_uid(cfg["judge_uid"], cfg["judge_uid"]))
    if mode == "userns" and "userns" in skip:
        layers["userns"] += f"; {userns.hint()}"  # (as a refusal would say it)
    if mode == "userns" and "userns" not in skip:
        layers["userns"] = userns.enter()
        cfg["nproc"] = cfg["max_procs"] + userns.OWN_PROCS  # counted per uid in this user namespace
    if "ipcns" not in skip:
        layers["ipcns"] = confine.probe_ipcns()
    confine.enter_namespaces(layers, skip, ("mountns",))
    proc = None
    if mode == "userns" and layers.get("userns") is None and layers["mountns"] is None and "pidns" not in skip:
        proc = rebirth(cfg, layers)
    proc = proc or proctree.Proc()  # the host's view, opened before the root changes
    own_pidns = os.open("self/ns/pid", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc.fd)
    confine.enter_namespaces(layers, skip, ("netns",) if "pidns" in layers else ("netns", "pidns"))
    if mode == "userns" and layers.get("userns") is None:
        userns.without_caps(layers)
    root = None
    if layers["mountns"] is None:
        root = os.path.join(cfg["tmp"], f"root-{os.urandom(6).hex()}")
        try:
            os.mkdir(root, 0o755)
            rootfs.fill(root, cfg["libs"])
        except OSError as e:
            layers["mountns"] = f"building the root failed: {e}"
    inits, init_r = candidates_pidns(cfg, layers, root)
    stat_fd = cpu_stat(cfg, layers) if layers["mountns"] is None else None  # (the cgroup tree is gone after the pivot)
    if layers["mountns"] is None:
        try:
            rootfs.enter(root, cfg["scratch_mb"])
        except OSError as e:
            layers["mountns"] = f"entering the root failed: {e}"
    judge_ns = None
    if inits:
        try:
            judge_ns = judge_pidns(inits, init_r, own_pidns, proc)
        except OSError as e:
            layers["pidns"] = f"the judge's pid namespace failed: {e}"
        os.close(init_r)
    os.close(own_pidns)
    cfg["active"] = sorted(k for k, v in layers.items() if v is None)
    cfg["judge_view"] = "pidns" in cfg["active"] and "mountns" in cfg["active"]
    cfg["first_free_fd"] = 6
    if "uid" in cfg["active"] and "mountns" not in cfg["active"]:
        proc.close()
        cfg["first_free_fd"] = fd_paths()
        proc = proctree.Proc()  # above the import dirs: C and J close it
    if layers["mountns"] is not None:
        stat_fd = cpu_stat(cfg, layers)  # (above the import dirs too)
    confine.prctl(confine.PR_SET_CHILD_SUBREAPER, 1)
    confine.set_rlimits(cfg)
    return proc, inits, judge_ns, layers, mode, stat_fd


def cpu_stat(cfg, layers):
    """An fd of the worker's cgroup's cpu.stat (cgroup v2: the CPU time of its whole tree), or
    None (the Clock then sums /proc); opened where the children close it (>= first_free_fd)."""
    if layers.get("cgroup") is not None or len(cfg["cgroup"]) != 1:
        return None
    try:
        return os.open(os.path.join(cfg["cgroup"][0], "cpu.stat"), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def rebirth(cfg, layers):
    """userns mode: go on as W', pid 1 of a pid namespace of the user namespace's own, while the
    process the parent started only waits for it (and W' dies with it). Only from there can W
    make two pid namespaces side by side (a second unshare needs a setns back to one's own pid
    namespace, which needs CAP_SYS_ADMIN over its owner: the host's, for the first process).
    Returns W's /proc view (a proc of that namespace, mounted where only W sees it) or None."""
    try:
        confine.unshare(confine.CLONE_NEWPID)
    except OSError as e:
        layers["pidns"] = f"unshare failed: {e.strerror}"
        return None
    pid = os.fork()
    if pid != 0:
        os.closerange(0, 1 << 16)
        os.waitpid(pid, 0)
        os._exit(0)
    confine.prctl(confine.PR_SET_PDEATHSIG, 9)
    view = os.path.join(cfg["tmp"], f"proc-{os.urandom(6).hex()}")
    os.mkdir(view, 0o700)
    # (W's pids are this namespace's now: without this view it cannot find its processes; if a
    # container hides parts of the host's /proc the mount fails, and the worker with it)
    confine.mount("proc", view, "proc", confine.PROC_FLAGS)  # (gone with the host's tree at pivot_root)
    return proctree.Proc(view)


def fork_init(r, proc_at):
    """Fork the init of the pid namespace this process unshared last; (pid, what it said or None)."""
    ready_r, ready_w = os.pipe() if proc_at else (None, None)
    pid = os.fork()
    if pid == 0:
        confine.write_oom_adj(-1000)
        confine.init_main(r, proc_at, ready_w)
    if ready_r is None:
        return pid, None
    os.close(ready_w)
    word = os.read(ready_r, 256).decode(errors="replace")
    os.close(ready_r)
    return pid, word or "the pid namespace's init died"


def candidates_pidns(cfg, layers, root):
    """The init of the candidates' pid namespace (it mounts that namespace's /proc into the
    unfinished root); ([pid], the read end of the inits' pipe) or ([], None) without one."""
    if layers["pidns"] is not None:
        return [], None
    r, w = os.pipe()
    pid, word = fork_init(r, root and os.path.join(root, "proc"))
    if word not in (None, "ok"):
        layers["mountns"] = word
    cfg["init_pipe"] = w  # never written, open while W lives: the inits see EOF when W is gone
    return [pid], r


def judge_pidns(inits, init_r, own_pidns, proc):
    """A second pid namespace, for the judge, with an init of its own; afterwards W's children
    go to the candidates' one. Returns the fds of (the judge's, the candidates') namespaces
    (W's own pid_for_children links: the inits, not dumpable, cannot be opened in user mode)."""
    cand = os.open("self/ns/pid_for_children", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc.fd)
    try:
        confine.setns(own_pidns, confine.CLONE_NEWPID)  # (a new one is made below W's own only)
        confine.unshare(confine.CLONE_NEWPID)
        pid, _ = fork_init(init_r, None)
        judge = os.open("self/ns/pid_for_children", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc.fd)
    finally:
        confine.setns(cand, confine.CLONE_NEWPID)
    inits.append(pid)
    try:
        fd = os.open(f"{pid}/oom_score_adj", os.O_WRONLY, dir_fd=proc.fd)  # (its /proc/self is not there)
        os.write(fd, b"-1000")
        os.close(fd)
    except OSError:
        pass  # (only root may lower it)
    return judge, cand
