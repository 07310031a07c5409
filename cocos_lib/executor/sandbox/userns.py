"""The path without root: the worker enters a user namespace of its own (confine.py, mode "userns").

Most distributions let any user create one (`unshare --user`). Inside, the worker holds every
capability over the namespaces it then creates (mount, net, pid, ipc) and builds the same
stdlib-only root as root does; outside it holds nothing more than before. Only one uid is
mapped (the caller's, to itself: newuidmap and /etc/subuid are not assumed), so there is no
fresh uid per generation: the candidates and the judge drop every capability and are kept
apart by pid and mount namespaces instead. Root itself never takes this path (a candidate
would be uid 0 of the host, capabilities or not): it drops candidates to fresh uids.
"""
import errno, os

from . import confine

CAP_SYS_ADMIN = 21
OWN_PROCS = 8  # the worker's own processes (W, two inits, the judge, a judge being replaced) share the uid
SYSCTL = "/proc/sys"


def has_cap(cap):
    """Whether this process has capability `cap` in its effective set."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> cap & 1)
    return False


def host_root():
    """Root of the initial user namespace (its uid map is the identity over all uids)."""
    if os.geteuid() != 0:
        return False
    with open("/proc/self/uid_map") as f:
        return f.read().split() == ["0", "0", "4294967295"]


def choose_mode(has_fresh_uids, skip):
    """"root" where the worker can drop candidates to fresh uids and create namespaces itself
    (and always for the host's root), else "userns"."""
    if host_root():
        return "root"
    if os.geteuid() == 0 and has_fresh_uids and "uid" not in skip and has_cap(CAP_SYS_ADMIN):
        return "root"
    return "userns"


def _sysctl(root, name):
    try:
        with open(os.path.join(root, *name.split("."))) as f:
            return f.read().strip()
    except OSError:
        return None


def hint(root=SYSCTL):
    """How to allow unprivileged user namespaces here: the sysctl that forbids them, if one does."""
    if _sysctl(root, "kernel.unprivileged_userns_clone") == "0":
        return ("sysctl kernel.unprivileged_userns_clone=0 forbids them: allow them with "
                "`sudo sysctl -w kernel.unprivileged_userns_clone=1`, or run as root")
    if _sysctl(root, "user.max_user_namespaces") == "0":
        return ("sysctl user.max_user_namespaces=0 forbids them: allow them with "
                "`sudo sysctl -w user.max_user_namespaces=15000`, or run as root")
    if _sysctl(root, "kernel.apparmor_restrict_unprivileged_userns") == "1":
        return ("sysctl kernel.apparmor_restrict_unprivileged_userns=1 strips their capabilities: allow them with "
                "`sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`, or run as root")
    return ("without root the sandbox needs unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 "
            "where it exists, user.max_user_namespaces > 0, no container seccomp filter against them), or run as root")


def enter():
    """Enter a new user namespace mapping this uid and gid to themselves; None, else why not
    (with the hint). Must run before any other namespace is created."""
    uid = os.geteuid()
    gid = os.getegid()
    try:
        confine.unshare(confine.CLONE_NEWUSER)
    except OSError as e:
        cause = "too many user namespaces" if e.errno == errno.ENOSPC else e.strerror
        return f"unshare(CLONE_NEWUSER) failed: {cause}; {hint()}"
    try:
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    except OSError as e:
        return f"writing the user namespace's {e.filename}: {e.strerror}; {hint()}"
    return None


def without_caps(layers, hint_root=SYSCTL):
    """After enter(): if every namespace failed for want of a capability, the user namespace gave
    none (an AppArmor or seccomp policy): say so on the userns layer."""
    if all(layers.get(k) is not None and "not permitted" in layers[k] for k in ("mountns", "netns", "pidns")):
        layers["userns"] = f"the user namespace grants no capability; {hint(hint_root)}"
