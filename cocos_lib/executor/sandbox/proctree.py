"""Process-tree hygiene on the trusted side: find, kill and reap what candidates started.

`Proc` reads /proc through a directory fd opened at start (once W has its own root, the /proc
it sees is the candidates' pid namespace, where W itself is not visible; the fd keeps W's view).
Nothing here blocks: `sweep` and `reap` give up at a deadline and say so, and the caller
replaces the worker (a ptrace'd or otherwise unkillable process cannot wedge W). Zombies are not
waited for here: candidates' orphans go to the namespace's init, which reaps them at once.
"""
import os, signal, time

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class Proc:
    """A /proc view: children, states and owners of processes by pid (pids in that view)."""

    def __init__(self, path="/proc"):
        self.fd = os.open(path, _DIR)

    def close(self):
        os.close(self.fd)

    def read(self, rel):
        """A small /proc file's bytes (b"" when it is gone)."""
        try:
            fd = os.open(rel, os.O_RDONLY | os.O_CLOEXEC, dir_fd=self.fd)
        except OSError:
            return b""
        try:
            return os.read(fd, 1 << 16)
        except OSError:
            return b""
        finally:
            os.close(fd)

    def tasks(self, pid):
        try:
            fd = os.open(f"{pid}/task", _DIR, dir_fd=self.fd)
        except OSError:
            return []
        try:
            return os.listdir(fd)
        finally:
            os.close(fd)

    def children(self, pid):
        """Direct children of `pid`, over all its threads (a single-threaded one: its own list,
        without listing its threads, which costs 8 syscalls more)."""
        stat = self.read(f"{pid}/stat")
        fields = stat.rsplit(b")", 1)[1].split() if b")" in stat else ()
        tids = [pid] if fields[17:18] == [b"1"] else self.tasks(pid)  # (field 20: num_threads)
        kids = []
        for tid in tids:
            kids += [int(k) for k in self.read(f"{pid}/task/{tid}/children").split()]
        return kids

    def state(self, pid):
        """The one-letter state ("R", "S", "Z", ...), or None once the pid is gone."""
        stat = self.read(f"{pid}/stat")
        return stat.rsplit(b")", 1)[1].split()[0].decode() if b")" in stat else None

    def tree(self, roots, keep=()):
        """`roots` and their descendants, breadth first, without `keep` and their subtrees."""
        out = [p for p in roots if p not in keep]
        for p in out:  # the list grows while we walk it
            out += [k for k in self.children(p) if k not in keep]
        return out

    def live(self, pids):
        return [p for p in pids if self.state(p) not in (None, "Z", "X")]

    def sweep(self, roots, keep=(), wait_s=2.0):
        """SIGKILL every live process in the trees of roots() (asked again on every pass: a
        killed parent's children become orphans elsewhere) but `keep`, until none is left alive
        (zombies are fine: their parent or the namespace's init reaps them); False if some still
        run after `wait_s` seconds (the caller gives the worker up)."""
        end = time.monotonic() + wait_s
        pause = 0.0002
        killed = set()
        settled = False
        while True:
            live = self.live(self.tree(roots(), keep))
            if not live:
                if not killed or settled:  # after a kill, one more look: an orphan may be in transit
                    return True
                settled = True
                time.sleep(pause)
                continue
            settled = False
            for pid in live:
                kill(pid)
            if time.monotonic() > end:
                return False
            if killed.issuperset(live):  # only dying ones left: give them a moment
                time.sleep(pause)
                pause = min(2 * pause, 0.02)
            killed.update(live)

    def owned_by(self, uids):
        """Pids whose real or effective uid is in `uids` (a whole-/proc scan)."""
        want = {str(u).encode() for u in uids}
        found = []
        for name in os.listdir(self.fd):
            if not name.isdigit():
                continue
            for line in self.read(f"{name}/status").splitlines():
                if line.startswith(b"Uid:"):
                    if want & set(line.split()[1:3]):
                        found.append(int(name))
                    break
        return found


def kill(pid, sig=signal.SIGKILL):
    try:
        os.kill(pid, sig)
    except OSError:
        pass


def reap(pid, wait_s=2.0):
    """Exit status (os.waitstatus_to_exitcode) of our child `pid` once it ended, None if it did
    not within `wait_s` (or is not our child)."""
    end = time.monotonic() + wait_s
    pause = 0.0001
    while True:
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if got:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > end:
            return None
        time.sleep(pause)
        pause = min(2 * pause, 0.02)


def kill_uids(uids, wait_s=3.0, proc=None):
    """SIGKILL every process of these uids until none is left (the parent's last resort after a
    worker died: a fresh uid per worker generation makes this exact); True if none is left."""
    own = proc is None
    proc = proc or Proc()
    end = time.monotonic() + wait_s
    try:
        while True:
            live = proc.live(proc.owned_by(uids))
            if not live:
                return True
            for pid in live:
                kill(pid)
            if time.monotonic() > end:
                return False
            time.sleep(0.01)
    finally:
        if own:
            proc.close()
