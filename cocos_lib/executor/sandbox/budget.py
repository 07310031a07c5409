"""A phase's time in W: every wait has a deadline.

A phase (the program's start-up, each test) gets its budget of CPU time (what the worker's tree
used meanwhile: Clock) and a wall-clock backstop (WALL_FACTOR x budget + WALL_SLACK), so a
loaded machine does not turn slow starts into timeouts.
"""
import os, time

WALL_FACTOR, WALL_SLACK = 2.0, 0.5
GRACE_S = 0.05  # a phase's first CPU-clock read comes after this much wall clock


class Clock:
    """CPU seconds the worker's whole tree has used: its cgroup's cpu.stat where there is one
    (an fd opened before the root changed), else the sum over its processes in /proc."""

    def __init__(self, proc, stat_fd=None):
        self.proc = proc
        self.fd = stat_fd
        self.hz = os.sysconf("SC_CLK_TCK")

    def __call__(self):
        if self.fd is not None:
            data = os.pread(self.fd, 4096, 0)
            for line in data.split(b"\n"):
                if line.startswith(b"usage_usec "):
                    return int(line.split()[1]) / 1e6
        total = 0
        for pid in self.proc.tree([os.getpid()]):
            stat = self.proc.read(f"{pid}/stat")
            if b")" in stat:
                total += sum(map(int, stat.rsplit(b")", 1)[1].split()[11:15]))
        return total / self.hz


class Budget:
    """A phase's time: `cpu_s` seconds of CPU (Clock) and a wall-clock backstop. The clock is
    first read after `grace` seconds of wall clock (most phases end before: no read at all);
    those count as CPU seconds used."""

    def __init__(self, cpu_s, clock):
        self.cpu_s = cpu_s
        self.clock = clock
        self.start = time.monotonic()
        self.wall_s = WALL_FACTOR * cpu_s + WALL_SLACK
        self.grace = min(GRACE_S, cpu_s / 2)
        self.cpu0 = None
        self.why = None

    def left(self):
        """Seconds W may wait before it looks again; 0 once the phase is over (`why` says why)."""
        now = time.monotonic()
        elapsed = now - self.start
        if elapsed >= self.wall_s:
            self.why = f"timeout: no result after {self.wall_s:.2f} s (wall-clock backstop)"
            return 0.0
        if elapsed < self.grace:
            return self.grace - elapsed
        if self.cpu0 is None:
            self.cpu0 = self.clock() - self.grace
        used = self.clock() - self.cpu0
        if used >= self.cpu_s:
            self.why = f"timeout after {self.cpu_s:.2f} s of CPU time"
            return 0.0
        return min(self.wall_s - elapsed, max(self.cpu_s - used, 0.005))

