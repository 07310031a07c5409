"""W's handle on one incarnation of a job: the candidate process C and its judge J.

W forks both (C runs the program, J runs setup) and connects them with a socket pair; W keeps
a copy of both ends, to drain what a killed process left unread and to tell J that the
process serving its test has ended ("gone"). Everything C says is untrusted and used only for
progress (ready, reaped) and for the fallback tests' nonce-tagged reports; J's messages
(frames of codec tuples) carry the trusted verdicts. Every wait has a deadline.
"""
import collections, os, select, socket, time

from . import child, codec, frames, judge, proctree

DIED = "sandbox process died (the candidate killed its parent or process group?)"


def how(status):
    return f"killed by signal {-status}" if status < 0 else f"exit status {status}"


def ended(status):
    return "error", f"test ended without a result ({how(status)})"


class Judge:
    """W's handle on the judge J: one process per worker generation, forked when first needed
    and again after a timeout or its own end; `a` is its end of the candidate socket."""

    def __init__(self, cfg, a):
        cmd_r, self.cmd_w = os.pipe()
        self.out_r, out_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            try:
                judge.main(cfg, (cmd_r, out_w, a.fileno()))
            finally:
                os._exit(70)
        os.close(cmd_r)
        os.close(out_w)
        os.set_blocking(self.cmd_w, False)
        os.set_blocking(self.out_r, False)
        self.fd = os.pidfd_open(self.pid)
        self.reader = frames.Reader(self.out_r)
        self.msgs = collections.deque()
        self.dead = False
        self.eof = False
        self.status = None

    def tell(self, message):
        try:
            os.write(self.cmd_w, frames.pack(codec.encode(message)))
        except OSError:
            pass

    def take(self):
        try:
            for payload in self.reader.poll():
                if payload is None:
                    self.eof = True
                else:
                    self.msgs.append(codec.decode(payload))
        except (codec.CodecError, frames.FrameError):
            self.dead = True

    def exit_status(self, wait_s):
        """J's exit status once it ended (None if it could not be reaped in time)."""
        if self.status is None:
            self.status = proctree.reap(self.pid, wait_s)
        return self.status

    def end(self):
        """Kill and reap J (bounded); False if it could not be reaped."""
        proctree.kill(self.pid)
        ok = self.exit_status(3.0) is not None
        for fd in (self.cmd_w, self.out_r, self.fd):
            os.close(fd)
        return ok


class Incarnation:
    """C for one job, and the judge's view of it (a fresh C after a timeout or a crash: the
    program runs again, and J runs setup again)."""

    def __init__(self, cfg, program, tests, setup, program_mode, judge_, b, serial, path):
        rand = os.urandom(16 * len(tests) + 8).hex()  # one getrandom: C's tag, a nonce per test
        self.ctag = f"@@C {rand[:16]} ".encode()
        self.nonces = [rand[16 + 32 * i:48 + 32 * i] for i in range(len(tests))]
        self.judge = judge_
        self.b = b
        self.serial = serial
        cmd_r, self.cmd_w = os.pipe()  # W's fds 0-5 stay open, so these never land on 3-5
        self.res_r, res_w = os.pipe()
        self.c = os.fork()
        if self.c == 0:
            try:
                child.candidate_main(cfg, program, tests, (cmd_r, res_w, b.fileno()), self.ctag)
            finally:
                os._exit(70)
        os.close(cmd_r)
        os.close(res_w)
        os.set_blocking(self.res_r, False)
        os.set_blocking(self.cmd_w, False)
        self.c_fd = os.pidfd_open(self.c)
        self.judge.tell(("job", serial, path, setup, tuple(tests), program_mode))
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
        for fd in (self.cmd_w, self.res_r, self.c_fd):
            os.close(fd)

    # ------------------------------------------------------------------ events
    def pump(self, wait):
        """Take in what arrived within `wait` seconds: C's lines, J's messages, deaths."""
        j = self.judge
        fds = [self.c_fd] * (not self.c_dead) + [j.fd] * (not j.dead) + [j.out_r] * (not j.eof)
        ready = select.select(fds + [self.res_r] * (not self.res_eof), [], [], max(wait, 0))[0]
        self.c_dead = self.c_dead or self.c_fd in ready
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
        """Fixed-size records to C; False if C does not take them (dead, or its pipe is full)."""
        try:
            os.write(self.cmd_w, b"".join(r.encode().ljust(child.REC, b" ") for r in records))
            return True
        except OSError:
            return False

    def gone(self, why):
        """Make J's pending call (and any later one in this test) raise CandidateEnded."""
        try:
            self.b.send(frames.pack_marked(codec.encode(("gone", why))), socket.MSG_DONTWAIT)
        except OSError:
            pass

    def drain(self, a):
        """Drop what a killed process left unread in the socket, both ways (bounded: a program's
        daemon that keeps writing cannot hold W here; it only garbles its own job's answers)."""
        for sock in (a, self.b):
            for _ in range(64):
                try:
                    if not sock.recv(1 << 16, socket.MSG_DONTWAIT):
                        break
                except OSError:
                    break

    # ------------------------------------------------------------------ phases
    def start(self, deadline):
        """None once C ran the program and J ran setup; else (outcome, message) for the job."""
        c_ready = False
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
            if c_ready and (self.trusted is not None or self.judge.dead):
                return None
            if self.c_dead:
                return "error", "program ended early (os._exit, a crash or a kill)"
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout", None
            self.pump(left)

    def trusted_test(self, i, budget, in_c):
        """(outcome, message) of test i, decided by J."""
        deadline = time.monotonic() + budget
        if self.needs[i] and not self.command(f"{'sserve' if in_c else 'serve'} {i}"):
            return "error", DIED
        self.judge.tell(("test", self.serial, i))
        told = False
        while True:
            while self.judge.msgs:
                msg = self.judge.msgs.popleft()
                if type(msg) is tuple and len(msg) == 5 and msg[:3] == ("verdict", self.serial, i):
                    if self.needs[i] and not in_c:
                        self.settle(i, deadline + 1.0)
                    return msg[3], msg[4]
            if self.judge.dead:  # the test itself ended the judge's process (os._exit, a crash)
                status = self.judge.exit_status(1.0)
                return ended(-9 if status is None else status)
            if self.needs[i] and not told:  # (C gone under a forked test: T_i may still answer)
                ended_here = self.c_dead if in_c else i in self.reaped
                if ended_here:
                    status = self.reaped.get(i, -9) if not in_c else None
                    why = "the candidate's process ended during the test"
                    self.gone(why if status is None else f"{why} ({how(status)})")
                    told = True
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout", f"timeout after {budget:.2f} s"
            self.pump(left)

    def settle(self, i, deadline):
        """Wait (bounded) until C says test i's server is gone and it reads commands again:
        only then may W drain the socket. If it does not, C is `stuck` (and replaced)."""
        while i not in self.reaped and not self.c_dead:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stuck = True
                return
            self.pump(left)

    def fallback_test(self, i, budget, in_c):
        """(outcome, message) of test i run inside the candidate (untrusted, as before); "void"
        if C died under a forked test (its report cannot be accepted: the job is void)."""
        deadline = time.monotonic() + budget
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
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout", f"timeout after {budget:.2f} s"
            self.pump(left)


def parse(frame):
    try:
        outcome, msg = frame.decode().split(" ", 1)
        if outcome in ("passed", "failed", "error"):
            return outcome, bytes.fromhex(msg.strip()).decode(errors="replace")
    except ValueError:
        pass
    return "error", "malformed report"
