"""Confinement of one worker's process tree: namespaces, fresh uids, rlimits, privileges.

LAYERS, each active or missing (with the reason) in the worker's hello to the parent:
  uid      candidates run as a fresh unprivileged uid per worker generation, the judge as a
           second one (needs root with CAP_SETUID and a uid map that covers both)
  netns    a network namespace per worker: one loopback, down (no network, no listener on
           the host's 127.0.0.1, no abstract unix socket of the host)
  mountns  a mount namespace per worker whose root holds only what the stdlib needs and a
           size-limited tmpfs /tmp (rootfs.py)
  pidns    a pid namespace per worker: candidates see their own processes only; when the
           worker dies the kernel kills every process in it
  ipcns    an IPC namespace per candidate process: its SysV objects die with it
  cgroup   memory (tmpfs included) and process-count caps on the worker's whole tree
           (cgroups.py); without it: RLIMIT_AS per process, RLIMIT_NPROC, tmpfs size
REQUIRED layers missing => the parent refuses to run candidates unless allowed explicitly.
Always set: rlimits (AS, NPROC, FSIZE, NOFILE, CORE=0) and no_new_privs (no set-uid binary
gives a candidate privileges back). Not defended: the kernel itself (no seccomp filter:
a kernel bug reachable by syscalls is reachable by candidates), CPU time beyond the wall
clock timeout of the running test, side channels (timing, /proc/meminfo, load).
"""
import ctypes, os, resource, signal

LAYERS = ("uid", "netns", "mountns", "pidns", "ipcns", "cgroup")
REQUIRED = ("uid", "netns", "mountns", "pidns", "ipcns")
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x20000, 0x4000000, 0x8000000
CLONE_NEWNET, CLONE_NEWPID = 0x40000000, 0x20000000
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 4, 36, 38
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(os.uname().machine)
_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def prctl(option, arg):
    _check(_libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0), f"prctl({option})")


def unshare(flags):
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


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


def enter_namespaces(layers, skip):
    """Unshare the worker's namespaces; returns {layer: None | reason it is missing}.
    Order: the mount namespace comes with netns/UTS in one call; pidns applies to children."""
    got = {}
    for layer, flags in (("mountns", CLONE_NEWNS | CLONE_NEWUTS), ("netns", CLONE_NEWNET), ("pidns", CLONE_NEWPID)):
        if layer in skip:
            got[layer] = "disabled by the configuration"
            continue
        try:
            unshare(flags)
            got[layer] = None
        except OSError as e:
            got[layer] = f"unshare failed: {e.strerror} (needs CAP_SYS_ADMIN)"
    if got["mountns"] is None:
        mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount goes back to the host
    layers.update(got)
    return got


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


def init_main(fd):
    """Z: pid 1 of the worker's pid namespace. Mounts the namespace's /proc, then only reaps
    (SIGCHLD ignored: orphans vanish at once) until the worker goes: when W dies, its death
    signal kills Z, and the kernel then kills every process in the namespace."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.closerange(0, fd)
    os.closerange(fd + 1, 1 << 16)
    while os.read(fd, 64):  # EOF when W is gone
        pass
    os._exit(0)
