"""Confinement of one worker's process tree: namespaces, fresh uids, rlimits, privileges.

Two modes (userns.py decides which at start):
  root    the worker runs as root (with CAP_SYS_ADMIN and CAP_SETUID): candidates and judge get
          fresh unprivileged uids per worker generation, the worker creates the namespaces;
  userns  any other caller: the worker first enters a user namespace of its own (one uid, the
          caller's, mapped to itself), whose capabilities let it create the same namespaces and
          root. No second uid exists there; the candidates and the judge drop every capability
          and live in pid and mount namespaces apart (neither sees, signals or ptraces the other
          or the worker; the namespaces' inits are not dumpable and hold no capability).
LAYERS, each active or missing (with the reason) in the worker's hello to the parent (the
layers of its mode only; STOPS says what each one stops):
  uid      (root) candidates run as a fresh unprivileged uid per worker generation, the judge as
           a second one (needs root with CAP_SETUID and a uid map that covers both)
  userns   (userns) the worker's own user namespace: the namespaces below without root; the
           candidates and the judge keep no capability, and are separated by namespaces
  netns    a network namespace per worker: one loopback, down (no network, no listener on
           the host's 127.0.0.1, no abstract unix socket of the host)
  mountns  a mount namespace per worker whose root holds only what the stdlib needs and a
           size-limited tmpfs /tmp (rootfs.py); the judge has one of its own (a slave of it)
  pidns    two pid namespaces per worker, one for the candidates, one for the judge, each with
           its own /proc: a candidate sees its own processes only; when the worker dies the
           kernel kills every process in them
  ipcns    an IPC namespace per candidate process (and per judge): its SysV objects die with it
  cgroup   memory (tmpfs included) and process-count caps on the worker's whole tree
           (cgroups.py); without it: RLIMIT_AS per process, RLIMIT_NPROC, tmpfs size
REQUIRED[mode] layers missing => the parent refuses to run candidates unless allowed explicitly.
Always set: rlimits (AS, NPROC, FSIZE, NOFILE, CORE=0) and no_new_privs (no set-uid binary
gives a candidate privileges back). Not defended: the kernel itself (no seccomp filter:
a kernel bug reachable by syscalls is reachable by candidates), CPU time beyond the running
test's budget (its CPU time, with a wall-clock backstop), side channels (timing, /proc/meminfo, load).
"""
import ctypes, os, resource, signal

LAYERS = ("uid", "userns", "netns", "mountns", "pidns", "ipcns", "cgroup")
REQUIRED = {"root": ("uid", "netns", "mountns", "pidns", "ipcns"),
            "userns": ("userns", "netns", "mountns", "pidns", "ipcns")}
MODE_LAYERS = {mode: req + ("cgroup",) for mode, req in REQUIRED.items()}
SEPARATION = {"root": "fresh unprivileged uids per worker generation (one for the candidates, one for the judge)",
              "userns": "namespaces: one uid (the caller's, in a user namespace of the worker's own); candidates "
                        "and judge hold no capability and live in pid and mount namespaces apart"}
STOPS = {  # what each layer stops a candidate from doing (Executor.describe(), the unconfined warning)
    "uid": "signalling or ptracing the judge and the worker, reading the caller's files, outliving a dead worker",
    "userns": "creating the namespaces below without root; without it nothing below exists",
    "netns": "network access (the internet, listeners on the host's 127.0.0.1, its abstract unix sockets)",
    "mountns": "reading files outside its scratch dir (the answer key, site-packages, the repo, $HOME) and "
               "leaving files behind outside it",
    "pidns": "seeing, signalling or ptracing the judge, the worker and the host's processes; outliving a dead worker",
    "ipcns": "SysV shared memory and semaphores that outlive the candidate or reach the host's",
    "cgroup": "a job's processes together using more memory (tmpfs included) than memory_mb",
}
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER = 0x20000, 0x4000000, 0x8000000, 0x10000000
CLONE_NEWNET, CLONE_NEWPID = 0x40000000, 0x20000000
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_READ, PR_CAPBSET_DROP = 1, 4, 23, 24
PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 36, 38
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_SLAVE, MS_SHARED = 1 << 19, 1 << 20
PROC_FLAGS = MS_NOSUID | MS_NODEV | MS_NOEXEC
MNT_DETACH = 2
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(os.uname().machine)
_libc = ctypes.CDLL(None, use_errno=True)


def unconfined_warning(described: dict) -> str:
    """The loud warning for an executor that runs without some required layers (from describe())."""
    missing = {k: v for k, v in described["missing"].items() if k in described["required"]}
    lines = [f"cocos executor: running candidates WITHOUT {', '.join(missing)} (see Executor.describe())",
             "  !! Model-written code now runs with fewer walls than designed. Do this only on a disposable",
             "  !! machine (a Colab runtime, a throwaway VM) or with code you trust. What is missing would have",
             "  !! stopped:"]
    for k, why in missing.items():
        lines.append(f"  - {k} ({why}): {described['stops'][k]}")
    return "\n".join(lines)


def _check(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def prctl(option, arg):
    _check(_libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0), f"prctl({option})")


def unshare(flags):
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def setns(fd, nstype):
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def mount(source, target, fstype, flags, data=None):
    enc = [None if s is None else s.encode() for s in (source, target, fstype, data)]
    _check(_libc.mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), enc[3]), f"mount {target}")


def umount(target):
    _check(_libc.umount2(target.encode(), MNT_DETACH), f"umount {target}")


def pivot_root(new_root, put_old):
    if SYS_PIVOT_ROOT is None:
        raise OSError(38, f"pivot_root: no syscall number for {os.uname().machine}")
    _check(_libc.syscall(SYS_PIVOT_ROOT, new_root.encode(), put_old.encode()), "pivot_root")


def set_rlimits(cfg):
    """What every process of the worker inherits (set once in W: per fork it cost ~0.8 ms)."""
    mib = 1 << 20
    limits = ((resource.RLIMIT_AS, cfg["memory_mb"] * mib), (resource.RLIMIT_FSIZE, cfg["file_mb"] * mib),
              (resource.RLIMIT_NOFILE, cfg["open_files"]), (resource.RLIMIT_NPROC, cfg["nproc"]),
              (resource.RLIMIT_CORE, 0))
    for res, lim in limits:
        resource.setrlimit(res, (lim, lim))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write raises OSError instead
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def drop_uid(uid, gid):
    """Become uid/gid for good (root only): no supplementary groups, no way back."""
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid or os.getegid() != gid:
        os._exit(72)


def probe_uid(uid, gid):
    """None if this root process may become uid/gid (tried in a throwaway child), else why not."""
    if os.geteuid() != 0:
        return "not root: no uid to drop candidates to"
    if not 0 < uid < 2 ** 32 - 1 or not 0 < gid < 2 ** 32 - 1:
        return f"uid {uid} is not an unprivileged uid"
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            drop_uid(uid, gid)
            code = 0
        finally:
            os._exit(code)
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    return None if status == 0 else f"setuid({uid}) failed (no CAP_SETUID, or a uid map that does not cover it)"


def write_oom_adj(value):
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))
    except OSError:
        pass


def enter_namespaces(layers, skip, names):
    """Unshare the worker's namespaces `names` (of mountns, netns, pidns), each one's layer None
    or why it is missing. The mount namespace comes with UTS; pidns applies to children."""
    flags = {"mountns": CLONE_NEWNS | CLONE_NEWUTS, "netns": CLONE_NEWNET, "pidns": CLONE_NEWPID}
    for layer in names:
        if layer in skip:
            layers[layer] = "disabled by the configuration"
            continue
        try:
            unshare(flags[layer])
            layers[layer] = None
        except OSError as e:
            layers[layer] = f"unshare failed: {e.strerror} (needs CAP_SYS_ADMIN)"
        if layer == "mountns" and layers[layer] is None:
            mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount goes back to the host


def probe_ipcns():
    """None if a process here may unshare its IPC namespace (tried in a throwaway child)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            unshare(CLONE_NEWIPC)
            code = 0
        finally:
            os._exit(code)
    ok = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    return None if ok else "unshare(CLONE_NEWIPC) failed (needs CAP_SYS_ADMIN)"


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_caps():
    """Give up every capability for good: the bounding set (nothing an exec could regain) and
    the effective, permitted, inheritable (and so ambient) sets; checked, else exit."""
    cap = 0
    while _libc.prctl(PR_CAPBSET_READ, ctypes.c_ulong(cap), 0, 0, 0) >= 0:
        prctl(PR_CAPBSET_DROP, cap)
        cap += 1
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3: two 32-bit words per set
    _check(_libc.capset(ctypes.byref(header), (_CapData * 2)()), "capset")
    got = (_CapData * 2)()
    _check(_libc.capget(ctypes.byref(header), got), "capget")
    if any(d.effective or d.permitted or d.inheritable for d in got) or _libc.prctl(PR_CAPBSET_READ, 0, 0, 0, 0):
        os._exit(73)


def judge_view():
    """The judge's own mount and IPC namespaces (it is in the judge's pid namespace already): a
    slave of the worker's mounts (each job's fresh /tmp reaches it), its /proc shows that pid
    namespace only (mounted over the candidates' one, which stays hidden under it)."""
    unshare(CLONE_NEWNS | CLONE_NEWIPC)
    mount(None, "/", None, MS_REC | MS_SLAVE)
    mount("proc", "/proc", "proc", PROC_FLAGS)


def init_main(fd, proc_at=None, ready=None):
    """Z: pid 1 of one of the worker's pid namespaces. Mounts that namespace's /proc at
    `proc_at` (if given; before the worker's pivot_root: a user namespace may mount a proc only
    where a full one is visible) and says so on `ready`, then gives up its privileges and only
    reaps (SIGCHLD ignored: orphans vanish at once) until the worker goes: when W dies, its death
    signal kills Z, and the kernel then kills every process in the namespace."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if ready is not None:
        word = b"ok"
        try:
            os.chdir(os.path.dirname(proc_at))  # (the new root: pivot_root moves this cwd along)
            mount("proc", proc_at, "proc", PROC_FLAGS)
        except OSError as e:
            word = f"mounting /proc failed: {e.strerror}".encode()
        os.write(ready, word)
    prctl(PR_SET_DUMPABLE, 0)  # same-uid candidates (userns mode) may not ptrace it
    drop_caps()
    os.closerange(0, fd)
    os.closerange(fd + 1, 1 << 16)
    while os.read(fd, 64):  # EOF when W is gone
        pass
    os._exit(0)
