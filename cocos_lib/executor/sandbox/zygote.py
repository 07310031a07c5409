"""W's handles on the judge's processes: its zygote Z (one per worker generation) and each J
that Z forks (judge.py is their side). W talks to both over sockets with bounded waits (ASK_S),
tells J a job's commands and takes its messages (frames of codec tuples), and knows through J's
pidfd when it ended; W ends J whenever it owes an answer W will not wait for.
"""
import collections, os, select, signal, socket

from . import codec, frames, judge, proctree

ASK_S = 10.0  # how long W waits for Z's answer or for J to take a command


class Zygote:
    """W's handle on the judge's zygote Z: one per worker generation, forked when first
    needed and again if it ends."""

    def __init__(self, cfg):
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.pid = os.fork()
        if self.pid == 0:
            try:
                judge.main(cfg, theirs.fileno())
            finally:
                os._exit(70)
        theirs.close()
        mine.settimeout(ASK_S)
        self.sock = mine
        self.reader = frames.FdReader(mine)
        self.fd = os.pidfd_open(self.pid)

    def gone(self):
        return bool(select.select([self.fd], [], [], 0)[0])

    def fork_judge(self):
        """A fresh J (Judge), or None if Z did not answer."""
        cmd_w, cmd_j = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        out_r, out_w = os.pipe()
        pidfd = None
        try:
            frames.send_with_fds(self.sock, frames.pack(b"fork"), [cmd_j.fileno(), out_w])
            if self.reader.next() == b"forked":
                pidfd = (self.reader.take_fds(1) or [None])[0]
        except OSError:
            pass
        cmd_j.close()
        os.close(out_w)
        if pidfd is None:
            cmd_w.close()
            os.close(out_r)
            return None
        return Judge(cmd_w, out_r, pidfd)

    def end(self):
        """Kill and reap Z (bounded); False if it could not be reaped."""
        proctree.kill(self.pid)
        ok = proctree.reap(self.pid, 3.0) is not None
        self.sock.close()
        os.close(self.fd)
        return ok


class Judge:
    """W's handle on J: its command socket, its messages, its pidfd, and whether it owes W an
    answer (a job's "ready", a test's verdict)."""

    def __init__(self, cmd, out_r, pidfd):
        cmd.settimeout(ASK_S)
        self.cmd = cmd
        self.out_r = out_r
        os.set_blocking(out_r, False)
        self.fd = pidfd
        self.reader = frames.Reader(out_r)
        self.msgs = collections.deque()
        self.dead = False
        self.eof = False
        self.owes = False

    @property
    def gone(self):
        return self.dead or self.eof

    def tell(self, message, fds=()):
        self.owes = True
        try:
            frames.send_with_fds(self.cmd, frames.pack(codec.encode(message)), fds)
        except OSError:
            self.dead = True

    def take(self):
        try:
            for payload in self.reader.poll():
                if payload is None:
                    self.eof = True
                else:
                    self.msgs.append(codec.decode(payload))
        except (codec.CodecError, frames.FrameError):
            self.dead = True

    def kill(self):
        try:
            signal.pidfd_send_signal(self.fd, signal.SIGKILL)
        except OSError:
            pass

    def end(self, wait_s=3.0):
        """Kill J (Z reaps it), wait until it is gone, close W's ends; False if it is not."""
        self.kill()
        gone = bool(select.select([self.fd], [], [], wait_s)[0])
        self.cmd.close()
        for fd in (self.out_r, self.fd):
            os.close(fd)
        return gone

