"""The parent side of the sandbox worker processes (executor.py is the public API).

One `Worker` is a `python -I -S sandbox.py` process fed length-prefixed marshal frames; a `Pool`
keeps one per slot plus a dispatcher thread that queues PIPELINE jobs per worker, enforces a
generous per-job deadline (the sandbox enforces the real per-test timeouts), replaces a worker
that died or hung (its running job becomes "error", the queued ones go back in line) and shuts
everything down on close. Results go to `ticket[1].put(index, outcomes, error)`.
"""
from __future__ import annotations

import collections, json, marshal, os, random, select, shutil, signal, struct, subprocess, sys, threading, time

SANDBOX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox.py")
MIN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
PIPELINE = 2  # jobs queued per worker, so a worker never waits for this process


def sandbox_uids(n: int, uid) -> list:
    """Uid per slot: None (no drop), or an unprivileged uid mapped in this user namespace."""
    if uid is None or os.geteuid() != 0:
        return [None] * n
    if uid != "auto":
        return [int(uid)] * n
    with open("/proc/self/uid_map") as f:
        ranges = [tuple(map(int, line.split())) for line in f]
    base = 2_000_000_000 + random.SystemRandom().randrange(100_000_000)
    mapped = all(any(lo <= base + i < lo + cnt for lo, _, cnt in ranges) for i in range(n))
    return [base + i if mapped else 65534 for i in range(n)]


def user_procs() -> int:
    uid, n = os.getuid(), 0
    for name in os.listdir("/proc"):
        try:
            n += name.isdigit() and os.stat(f"/proc/{name}").st_uid == uid
        except OSError:
            pass
    return n

class Worker:
    def __init__(self, cfg: dict):
        self.proc = subprocess.Popen([sys.executable, "-I", "-S", SANDBOX, json.dumps(cfg)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=MIN_ENV, cwd=cfg["tmp"], start_new_session=True)
        self.fd, self.buf, self.inflight, self.since = self.proc.stdout.fileno(), b"", collections.deque(), 0.0
        os.set_blocking(self.fd, False)

    def send(self, ticket):
        if not self.inflight:
            self.since = time.monotonic()
        self.inflight.append(ticket)
        data = marshal.dumps((id(ticket),) + ticket[0])
        try:
            self.proc.stdin.write(struct.pack(">I", len(data)) + data)
            self.proc.stdin.flush()
        except OSError:  # the worker died: its stdout's EOF tells the dispatcher
            pass

    def frames(self):
        """Complete frames read so far; None in the list means the worker is gone."""
        out = []
        try:
            data = os.read(self.fd, 1 << 20)
        except BlockingIOError:
            return out
        self.buf += data
        while len(self.buf) >= 4 and len(self.buf) >= 4 + struct.unpack(">I", self.buf[:4])[0]:
            n = struct.unpack(">I", self.buf[:4])[0]
            out.append(marshal.loads(self.buf[4:4 + n]))
            self.buf = self.buf[4 + n:]
        return out + [None] * (not data)

    def kill(self):
        """Kill the worker and anything left in its session (only needed if it died)."""
        pid = self.proc.pid
        for name in os.listdir("/proc"):
            try:
                with open(f"/proc/{name}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[3]) == pid:
                        os.kill(int(name), signal.SIGKILL)
            except (OSError, ValueError, IndexError):
                pass
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        try:
            self.proc.stdin.close()
        except OSError:  # unflushed bytes to a dead worker
            pass


class Pool:
    """Workers plus one dispatcher thread; holds no reference to the Executor (so GC closes it)."""

    def __init__(self, cfgs: list):
        self.cfgs, self.lock, self.pending, self.closed = cfgs, threading.Lock(), collections.deque(), False
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        self.workers = [Worker(c) for c in cfgs]
        self.thread = threading.Thread(target=self._loop, name="cocos-executor", daemon=True)
        self.thread.start()

    def submit(self, tickets):
        with self.lock:
            if self.closed:
                raise RuntimeError("Executor is closed")
            self.pending.extend(tickets)
        os.write(self.wake_w, b"x")

    def _finish(self, ticket, outcomes, error):
        ticket[1].put(ticket[2], outcomes, error)  # ticket = [job, batch, index]

    def _replace(self, slot, why):
        """A worker died or hung: its running job is void, the queued ones go back in line."""
        w = self.workers[slot]
        w.kill()
        if w.inflight:
            head = w.inflight.popleft()
            self._finish(head, ("error",) * len(head[0][2]), why)
        with self.lock:
            self.pending.extendleft(reversed(w.inflight))
        self.workers[slot] = Worker(self.cfgs[slot])

    def _loop(self):
        try:
            self._dispatch()
        except BaseException as e:  # never leave a caller waiting forever
            with self.lock:
                self.closed = True
            print(f"cocos executor: dispatcher crashed: {e!r}", file=sys.stderr)
        self._shutdown()

    def _dispatch(self):
        while True:
            with self.lock:
                if self.closed:
                    break
                for w in self.workers:
                    while self.pending and len(w.inflight) < PIPELINE:
                        w.send(self.pending.popleft())
            now, limit = time.monotonic(), 3600.0
            for slot, w in enumerate(self.workers):
                if w.inflight:
                    job = w.inflight[0][0]
                    left = w.since + (2 * len(job[2]) + 2) * job[3] + 30 - now
                    if left <= 0:
                        self._replace(slot, "sandbox worker hung and was replaced")
                    limit = min(limit, max(left, 0.0))
            fds = [w.fd for w in self.workers]
            ready, _, _ = select.select(fds + [self.wake_r], [], [], limit)
            if self.wake_r in ready:
                os.read(self.wake_r, 1 << 16)
            for slot, w in enumerate(self.workers):
                if w.fd not in ready:
                    continue
                for frame in w.frames():
                    if frame is None:
                        self._replace(slot, "sandbox worker died and was replaced (job voided)")
                        break
                    if frame[0] == "hello":
                        continue
                    ticket = w.inflight.popleft()
                    w.since = time.monotonic()
                    self._finish(ticket, frame[1], frame[2])

    def _shutdown(self):
        with self.lock:
            left = list(self.pending) + [t for w in self.workers for t in w.inflight]
            self.pending.clear()
        for t in left:
            self._finish(t, ("error",) * len(t[0][2]), "executor closed")
        for w in self.workers:
            try:
                w.proc.stdin.close()  # EOF: the worker kills its descendants and exits
            except OSError:
                pass
        deadline = time.monotonic() + 5
        for w in self.workers:
            try:
                w.proc.wait(max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                pass
            w.kill()
        for fd in (self.wake_r, self.wake_w):
            os.close(fd)
        shutil.rmtree(self.cfgs[0]["tmp"], ignore_errors=True)

    def close(self):
        with self.lock:
            if self.closed:
                return
            self.closed = True
        os.write(self.wake_w, b"x")
        if threading.current_thread() is not self.thread:
            self.thread.join()
