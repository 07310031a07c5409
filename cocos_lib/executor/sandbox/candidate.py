"""W's handle on one incarnation of a job: the candidate process C, as the judge J sees it.

What an incarnation owns, and nothing outlives it: C (runs the program once; T_i, one fork per
test), its command channel, and a fresh socket pair between J and C's side (C inherits one end,
J gets the other with the job; W keeps a copy of C's end only to tell J that the process serving
its test has ended: "gone"; requests and answers carry ids, so nothing left in it from one test
answers another). When the incarnation
ends (the job is done, a test timed out, C crashed) W kills C's tree, and J too if it owes an
answer (worker.py): a judge left waiting for an answer never serves anything else. J itself
(judge.py) runs setup afresh for every test and keeps nothing of a candidate's.
Everything C says is untrusted and used only for progress (ready, reaped) and for the fallback
tests' nonce-tagged reports; J's messages (frames of codec tuples) carry the trusted
verdicts. W's handles on J and its zygote: zygote.py; every wait's deadline: budget.py.
"""
import collections, os, select, socket, time

from . import channel, child, codec, frames, proctree

DIED = "sandbox process died (the candidate killed its parent or process group?)"


def how(status):
    return f"killed by signal {-status}" if status < 0 else f"exit status {status}"


def ended(status):
    return "error", f"test ended without a result ({how(status)})"


class Incarnation:
    """C for one job, seen by the judge J (a fresh C after a timeout or a crash: the program runs
    again, and setup in J too; J is ended with it if it owes an answer)."""

    def __init__(self, cfg, program, code, tests, setup, program_mode, entry_point, judge_, serial, path, clock):
        rand = os.urandom(16 * len(tests) + 8).hex()  # one getrandom: C's tag, a nonce per test
        self.ctag = f"@@C {rand[:16]} ".encode()
        self.nonces = [rand[16 + 32 * i:48 + 32 * i] for i in range(len(tests))]
        self.serial = serial
        self.clock = clock
        self.judge = judge_
        cmd_w, cmd_c = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)  # W's fds 0-5 stay open
        a, self.b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)  # J <-> this incarnation
        self.res_r, res_w = os.pipe()
        self.c = os.fork()
        if self.c == 0:
            try:
                child.candidate_main(cfg, program, tests, (cmd_c.fileno(), res_w, self.b.fileno()), self.ctag)
            finally:
                os._exit(70)
        cmd_c.close()
        os.close(res_w)
        cmd_w.setblocking(False)
        cmd_w.shutdown(socket.SHUT_RD)  # (C's side may not write back: nothing piles up in W's end)
        self.cmd = cmd_w
        os.set_blocking(self.res_r, False)
        self.c_fd = os.pidfd_open(self.c)
        if judge_ is not None:
            judge_.tell(("job", serial, path, setup, code, tuple(tests), program_mode, entry_point), [a.fileno()])
        a.close()
        self.buf = b""
        self.lines = collections.deque()
        self.reaped = {}
        self.c_dead = self.res_eof = self.stuck = False
        self.trusted = self.needs = None
        self.setup_error = None
        self.status = {}
        self.program_kids = set()
        self.ns_pids = None

    def reap_c(self, wait_s):
        """C's exit status once it ended (-9 if it could not be reaped in time)."""
        if self.c not in self.status:
            got = proctree.reap(self.c, wait_s)
            if got is None:
                return -9
            self.status[self.c] = got
        return self.status[self.c]

    def close(self):
        """Close W's ends (C is the caller's to kill and reap)."""
        self.b.close()
        self.cmd.close()
        for fd in (self.res_r, self.c_fd):
            os.close(fd)

    @property
    def judge_dead(self):
        return self.judge is None or self.judge.gone

    # ------------------------------------------------------------------ events
    def pump(self, wait):
        """Take in what arrived within `wait` seconds: C's lines, J's messages, deaths."""
        j = self.judge
        fds = [self.c_fd] * (not self.c_dead) + [self.res_r] * (not self.res_eof)
        if j is not None:
            fds += [j.fd] * (not j.dead) + [j.out_r] * (not j.eof)
        ready = select.select(fds, [], [], max(wait, 0))[0]
        self.c_dead = self.c_dead or self.c_fd in ready
        if j is not None:
            j.dead = j.dead or j.fd in ready
            if j.out_r in ready or (j.dead and not j.eof):
                j.take()
        while not self.res_eof and (self.c_dead or self.res_r in ready) and len(self.buf) < 1 << 20:
            try:
                data = os.read(self.res_r, 1 << 16)
            except BlockingIOError:
                break
            self.res_eof = not data
            self.buf += data
            if len(data) < 1 << 16 and not self.c_dead:
                break  # a short read emptied the pipe: select tells when more comes
        *lines, self.buf = self.buf.split(b"\n")
        self.buf = self.buf[-8192:]  # a real line is written at once and is < 4 KiB
        for line in lines:
            if self.ctag in line:
                fields = line[line.rfind(self.ctag) + len(self.ctag):].decode(errors="replace").split()
                if len(fields) == 3 and fields[0] == "reaped" and fields[1].isdigit():
                    self.reaped[int(fields[1])] = int(fields[2]) if fields[2].lstrip("-").isdigit() else -9
                else:
                    self.lines.append(fields)
            else:
                self.lines.append(line)

    def command(self, *records):
        """Fixed-size records to C; False if C does not take them (dead, or its buffer is full)."""
        try:
            self.cmd.send(b"".join(r.encode().ljust(child.REC, b" ") for r in records))
            return True
        except OSError:
            return False

    def gone(self, i, why):
        """Make J's pending call (and any later one in test i) raise CandidateEnded."""
        try:
            self.b.send(frames.pack_marked(channel.GONE + codec.encode(("gone", i, why))), socket.MSG_DONTWAIT)
        except OSError:
            pass

    # ------------------------------------------------------------------ phases
    def start(self, budget):
        """None once C ran the program and J ran setup; else (outcome, message) for the job."""
        c_ready = False
        if self.judge is None:
            return "error", "the judge did not start"
        while True:
            while self.lines:
                fields = self.lines.popleft()
                if type(fields) is list and fields[:1] == ["ready"]:
                    c_ready = True
                elif type(fields) is list and fields[:1] == ["codeerror"] and len(fields) == 2:
                    return "error", bytes.fromhex(fields[1]).decode(errors="replace")
            while self.judge.msgs and self.trusted is None:
                msg = self.judge.msgs.popleft()
                if type(msg) is tuple and len(msg) == 5 and msg[:2] == ("ready", self.serial):
                    self.setup_error, self.trusted, self.needs = msg[2:]
                    self.judge.owes = False
            if c_ready and (self.trusted is not None or self.judge_dead):
                return None
            if self.c_dead:
                return "error", "program ended early (os._exit, a crash or a kill)"
            left = budget.left()
            if left <= 0:
                return "timeout", None
            self.pump(left)

    def await_ready(self, wait_s):
        """Wait (bounded) for J's "ready" to this incarnation's job, so it owes nothing."""
        end = time.monotonic() + wait_s
        while self.judge is not None and self.judge.owes and not self.judge_dead and time.monotonic() < end:
            while self.judge.msgs:
                msg = self.judge.msgs.popleft()
                if type(msg) is tuple and len(msg) == 5 and msg[:2] == ("ready", self.serial):
                    self.judge.owes = False
            if self.judge.owes:
                self.pump(min(end - time.monotonic(), 0.1))

    def trusted_test(self, i, budget, in_c):
        """(outcome, message) of test i, decided by J."""
        if self.needs[i] and not self.command(f"{'sserve' if in_c else 'serve'} {i}"):
            return "error", DIED
        self.judge.tell(("test", self.serial, i))
        told = False
        while True:
            while self.judge.msgs:
                msg = self.judge.msgs.popleft()
                if type(msg) is tuple and len(msg) == 5 and msg[:3] == ("verdict", self.serial, i):
                    self.judge.owes = False
                    if self.needs[i] and not in_c:
                        self.settle(i, time.monotonic() + 1.0)
                    return msg[3], msg[4]
            if self.judge_dead:  # the test itself ended the judge's process (os._exit, a crash)
                return "error", "test ended without a result (the judge's process ended)"
            if self.needs[i] and not told:  # (C gone under a forked test: T_i may still answer)
                ended_here = self.c_dead if in_c else i in self.reaped
                if ended_here:
                    status = self.reaped.get(i, -9) if not in_c else None
                    why = "the candidate's process ended during the test"
                    self.gone(i, why if status is None else f"{why} ({how(status)})")
                    told = True
            left = budget.left()
            if left <= 0:
                return "timeout", budget.why
            self.pump(left)

    def settle(self, i, deadline):
        """Wait (bounded) until C says test i's server is gone and it reads commands again. If
        it does not, C is `stuck` (and replaced)."""
        while i not in self.reaped and not self.c_dead:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stuck = True
                return
            self.pump(left)

    def fallback_test(self, i, budget, in_c):
        """(outcome, message) of test i run inside the candidate (untrusted, as before); "void"
        if C died under a forked test (its report cannot be accepted: the job is void)."""
        tag = f"@@T {self.nonces[i]} {i} ".encode()
        self.reaped.pop(i, None)  # (a trusted attempt of this test reported one already)
        if not self.command(f"{'run' if in_c else 'go'} {i}", f"nonce {self.nonces[i]}"):
            return "error", DIED
        frame = None
        while True:
            while self.lines:
                line = self.lines.popleft()
                if type(line) is bytes and tag in line:
                    frame = line[line.rfind(tag) + len(tag):]
            if frame is not None and (in_c or i in self.reaped):
                status = 0 if in_c else self.reaped[i]
                return ended(status) if status != 0 else parse(frame)
            if not in_c and i in self.reaped:
                return ended(self.reaped[i])
            if self.c_dead:
                return ended(self.reap_c(1.0)) if in_c else ("void", DIED)
            left = budget.left()
            if left <= 0:
                return "timeout", budget.why
            self.pump(left)


def parse(frame):
    try:
        outcome, msg = frame.decode().split(" ", 1)
        if outcome in ("passed", "failed", "error"):
            return outcome, bytes.fromhex(msg.strip()).decode(errors="replace")
    except ValueError:
        pass
    return "error", "malformed report"
