"""The parent side of the sandbox worker processes (cocos_lib.executor is the public API).

One `Worker` is a `python -I -S sandbox/launch.py CONFIG` process (the base interpreter, not the
venv) fed length-prefixed marshal frames (sandbox/frames.py). Every worker start is a new
generation: as root, two fresh random uids (candidates, judge) never used by a live process; and
a fresh cgroup (sandbox/cgroups.py) capping the memory and process count of its whole tree. The
worker answers a hello with the confinement layers it got and its mode ("root" or "userns").
A `Pool` keeps one worker per slot plus a dispatcher thread that queues PIPELINE jobs per
worker, enforces a generous per-job deadline (the worker enforces the real per-test timeouts),
replaces a worker that died or hung (its running job becomes "error", the queued ones go back
in line) and shuts everything down on close: the worker, then every process of its uids (its
pid namespaces die with it anyway), then its cgroup. Results go to
`ticket[1].put(index, outcomes, error, trusted)` (ticket[1]: a Batch).
"""
from __future__ import annotations

import collections, functools, glob, json, marshal, os, random, select, shutil, subprocess, sys, threading, time

from cocos_lib.executor.sandbox import cgroups, frames, proctree
from cocos_lib.executor.sandbox.budget import WALL_FACTOR, WALL_SLACK

HERE = os.path.dirname(os.path.abspath(__file__))
LAUNCH = os.path.join(HERE, "sandbox", "launch.py")
MIN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
PIPELINE = 2  # jobs queued per worker, so a worker never waits for this process
HELLO_S = 60.0


def interpreter() -> str:
    """The base interpreter (a venv's python runs the same stdlib; its site-packages stay out)."""
    base = getattr(sys, "_base_executable", None)
    return base if base and os.path.exists(base) else sys.executable


@functools.lru_cache(maxsize=None)
def shared_libs(python: str) -> tuple:
    """Shared libraries the interpreter and its lib-dynload extensions load (ldd), for the root."""
    stdlib = os.path.dirname(os.__file__)  # (a venv's sysconfig paths point into the venv)
    files = [python] + sorted(glob.glob(os.path.join(stdlib, "lib-dynload", "*.so")))
    try:
        out = subprocess.run(["ldd", *files], capture_output=True, text=True, timeout=60, env=MIN_ENV).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    libs = set()
    for line in out.splitlines():
        parts = line.split()
        for p in parts:
            if p.startswith("/") and os.path.exists(p) and not p.endswith(":"):
                libs.add(p)
    return tuple(sorted(libs - set(files)))


def fresh_uids(n: int = 2) -> list | None:
    """n random unprivileged uids inside this user namespace's map, owned by no live process
    (None if the map has no room: the worker then reports the uid layer missing)."""
    with open("/proc/self/uid_map") as f:
        ranges = [tuple(map(int, line.split())) for line in f]
    lo, hi = 2_000_000_000, 4_000_000_000
    usable = [(max(a, lo), min(a + c, hi)) for a, _, c in ranges if min(a + c, hi) - max(a, lo) > 1000]
    if not usable:
        return None
    rng = random.SystemRandom()
    proc = proctree.Proc()
    try:
        while True:
            a, b = rng.choice(usable)
            picks = [rng.randrange(a, b) for _ in range(n)]
            if len(set(picks)) == n and not proc.owned_by(picks):
                return picks
    finally:
        proc.close()


def user_procs() -> int:
    """How many processes this uid has now (RLIMIT_NPROC counts them all when it cannot drop)."""
    proc = proctree.Proc()
    try:
        return len(proc.owned_by([os.getuid()]))
    finally:
        proc.close()


class Worker:
    """One worker generation: its process, uids, cgroup and the layers it reported."""

    def __init__(self, base_cfg: dict, slot: int):
        cfg = dict(base_cfg)
        uids = fresh_uids(2) if os.geteuid() == 0 else None
        cfg["uid"], cfg["judge_uid"] = uids or (None, None)
        cfg["uid_missing"] = ("not root: no uid to drop candidates to" if os.geteuid() != 0
                              else "the uid map has no room for fresh unprivileged uids")
        self.uids = uids or []
        cfg["cgroup"], cfg["cgroup_missing"] = [], "disabled by the configuration"
        if "cgroup" not in cfg["disable"]:
            name = f"cocos-{os.getpid()}-{slot}-{os.urandom(4).hex()}"
            cfg["cgroup"], cfg["cgroup_missing"] = cgroups.create(name, (cfg["memory_mb"] << 20) + cgroups.HEADROOM,
                                                                  cfg["max_procs"] + 16)
        self.cgroup = cfg["cgroup"]
        self.proc = subprocess.Popen([interpreter(), "-I", "-S", LAUNCH, json.dumps(cfg)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=MIN_ENV, cwd=cfg["tmp"], start_new_session=True)
        self.fd = self.proc.stdout.fileno()
        self.reader = frames.Reader(self.fd)
        self.inflight = collections.deque()
        self.since = 0.0
        self.layers = None
        self.mode = None

    def hello(self) -> dict:
        """The layers the worker reports once it confined itself ({} if it died first)."""
        self.layers, self.mode = self._hello()
        return self.layers

    def _hello(self) -> tuple:
        end = time.monotonic() + HELLO_S
        while time.monotonic() < end:
            ready = select.select([self.fd], [], [], end - time.monotonic())[0]
            if not ready:
                break
            for payload in self.reader.poll():
                if payload is None:
                    return {}, None
                msg = marshal.loads(payload)
                if msg[0] == "hello":
                    os.set_blocking(self.fd, False)
                    return msg[2], msg[3]
        return {}, None

    def send(self, ticket):
        if not self.inflight:
            self.since = time.monotonic()
        self.inflight.append(ticket)
        try:
            self.proc.stdin.write(frames.pack(marshal.dumps((id(ticket),) + ticket[0])))
            self.proc.stdin.flush()
        except OSError:  # the worker died: its stdout's EOF tells the dispatcher
            pass

    def frames(self):
        """Complete frames read so far; None in the list means the worker is gone."""
        return [None if p is None else marshal.loads(p) for p in self.reader.poll()]

    def kill(self):
        """Kill the worker, then anything of its uids still alive; remove its cgroup."""
        self.proc.kill()
        self.proc.wait()
        if self.uids:
            proctree.kill_uids(self.uids)
        left = cgroups.remove(self.cgroup)
        if left:
            print(f"cocos executor: could not remove cgroup(s) {left}", file=sys.stderr)
        self.proc.stdout.close()
        try:
            self.proc.stdin.close()
        except OSError:  # unflushed bytes to a dead worker
            pass


class Batch:
    """The reports of one run_many call, filled by the dispatcher thread (`report`: the report
    type, executor.TestReport, made from (outcomes, error, trusted))."""

    def __init__(self, n, report):
        self.report = report
        self.reports = [None] * n
        self.left = n
        self.cond = threading.Condition()

    def put(self, i, outcomes, error, trusted):
        if error is not None:  # (a candidate's message may hold lone surrogates: no UTF-8 writer may choke)
            error = error.encode("utf-8", "backslashreplace").decode("utf-8")
        with self.cond:
            self.reports[i] = self.report(tuple(outcomes), error, tuple(trusted))
            self.left -= 1
            if not self.left:  # run_many polls for the progress bar; wake it once, when done
                self.cond.notify_all()


class Pool:
    """Workers plus one dispatcher thread; holds no reference to the Executor (so GC closes it)."""

    def __init__(self, cfg: dict, n: int):
        self.cfg = cfg
        self.lock = threading.Lock()
        self.pending = collections.deque()
        self.closed = False
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        self.workers = []
        for slot in range(n):
            self.workers.append(Worker(cfg, slot))
        for w in self.workers:  # (they confine themselves in parallel)
            w.hello()
        self.layers = self.workers[0].layers
        self.mode = self.workers[0].mode
        self.thread = threading.Thread(target=self._loop, name="cocos-executor", daemon=True)
        self.thread.start()

    def submit(self, tickets):
        with self.lock:
            if self.closed:
                raise RuntimeError("Executor is closed")
            self.pending.extend(tickets)
        os.write(self.wake_w, b"x")

    def _finish(self, ticket, outcomes, error, trusted):
        ticket[1].put(ticket[2], outcomes, error, trusted)  # ticket = [job, batch, index]

    def _replace(self, slot, why):
        """A worker died or hung: its running job is void, the queued ones go back in line."""
        w = self.workers[slot]
        w.kill()
        if w.inflight:
            head = w.inflight.popleft()
            n = len(head[0][2])
            self._finish(head, ("error",) * n, why, (True,) * n)
        with self.lock:
            self.pending.extendleft(reversed(w.inflight))
        self.workers[slot] = Worker(self.cfg, slot)
        self.workers[slot].hello()

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
                    left = w.since + (len(job[2]) + 1) * (WALL_FACTOR * job[3] + WALL_SLACK + 1) + 30 - now
                    if left <= 0:
                        self._replace(slot, "sandbox worker hung and was replaced")
                    limit = min(limit, max(left, 0.0))
            ready, _, _ = select.select([w.fd for w in self.workers] + [self.wake_r], [], [], limit)
            if self.wake_r in ready:
                os.read(self.wake_r, 1 << 16)
            for slot, w in enumerate(self.workers):
                if w.fd in ready:
                    self._take(slot, w)

    def _take(self, slot, w):
        for frame in w.frames():
            if frame is None:
                self._replace(slot, "sandbox worker died and was replaced (job voided)")
                return
            if frame[0] == "hello":
                continue
            ticket = w.inflight.popleft()
            w.since = time.monotonic()
            self._finish(ticket, frame[1], frame[2], frame[3])

    def _shutdown(self):
        with self.lock:
            left = list(self.pending) + [t for w in self.workers for t in w.inflight]
            self.pending.clear()
        for t in left:
            n = len(t[0][2])
            self._finish(t, ("error",) * n, "executor closed", (True,) * n)
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
        end = time.monotonic() + 5  # a worker's root dir stays busy until its namespace is gone
        while os.path.exists(self.cfg["tmp"]) and time.monotonic() < end:
            shutil.rmtree(self.cfg["tmp"], ignore_errors=True)
            if os.path.exists(self.cfg["tmp"]):
                time.sleep(0.02)

    def close(self):
        with self.lock:
            if self.closed:
                return
            self.closed = True
        os.write(self.wake_w, b"x")
        if threading.current_thread() is not self.thread:
            self.thread.join()
