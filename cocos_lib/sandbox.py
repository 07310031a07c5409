"""The sandbox worker: a pristine, stdlib-only interpreter that runs model-written code.

Started per slot by cocos_lib.executor as `python -I -S sandbox.py CONFIG_JSON`; it imports no
project module and never torch. Per job:  W (this worker: trusted, runs no candidate code, child
subreaper) --fork--> C (the candidate: unprivileged uid, runs program = setup + "\\n" + code once)
--fork--> T_i (one per test, from C's state: every test sees the program as if just run fresh;
the last test runs in C itself, which is discarded after it).
Result channel: W writes "go i" and a fresh nonce into C's command pipe; T_i reads the nonce only
after its test has finished and reports "@@T <nonce> i outcome msg"; W accepts it only once C has
reaped T_i with exit status 0. Forged lines (no nonce) are ignored; early exits never report.
Wall-clock timeouts are enforced by W (no SIGALRM); after every test W SIGKILLs and reaps every
descendant but C, after every job everything.
isolation="program": W writes "seq i" + nonce_i; C runs test i itself, reads nonce_i, reports;
W answers "next" + nonce_i+1 and so on (one nonce per test, read after the test, a timeout per
test). If test j hangs or ends C, W kills C's tree (as after a timeout in "test" mode), restores
the scratch dir and starts a fresh C (program run again) for test j+1 on.
"""
import builtins, collections, ctypes, gc, json, marshal, os, resource, select, shutil, signal, struct, sys, time, types

# Loaded once for all candidates. Each makes every fork dearer: only cheap, common ones; never
# random or tempfile (random re-seeds itself in every forked child: +0.2 ms CPU per test).
PRELOAD = ("typing", "re", "collections", "math", "itertools", "functools", "heapq", "bisect", "string")
PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 36, 38
REC = 64  # command records W -> C / T_i have this fixed size (atomic pipe writes, exact reads)
_fork, _exit, _read, _write, _getpid, _waitpid = os.fork, os._exit, os.read, os.write, os.getpid, os.waitpid
_setpgid, _wstatus, _freeze = os.setpgid, os.waitstatus_to_exitcode, gc.freeze
# the harness code that runs after candidate code uses only these (a candidate may patch builtins)
_exec, _AssertionError, _BaseException = builtins.exec, AssertionError, BaseException
_len, _int, _str, _type, _isinstance, _range = len, int, str, type, isinstance, range
_libc = ctypes.CDLL(None, use_errno=True)


def prctl(option, arg):
    if _libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0):
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


# ------------------------------------------------------------------ W <-> main process framing
def read_exact(fd, n, on_eof=lambda: None):
    buf = b""
    while _len(buf) < n:
        chunk = _read(fd, n - _len(buf))
        if not chunk:
            return on_eof()
        buf += chunk
    return buf


def read_frame(fd):
    """One marshal frame (4-byte big-endian length first) from the main process; None at EOF."""
    head = read_exact(fd, 4)
    return None if head is None else marshal.loads(read_exact(fd, struct.unpack(">I", head)[0]))


def write_frame(fd, obj):
    data = marshal.dumps(obj)
    data = struct.pack(">I", len(data)) + data
    while data:
        data = data[os.write(fd, data):]


# ------------------------------------------------------------------ process-tree hygiene (in W)
def read_all(path):
    """A small /proc file in 3-4 syscalls (open() would add fstat, ioctl, lseek)."""
    fd, data = os.open(path, os.O_RDONLY | os.O_CLOEXEC), b""
    try:
        while chunk := os.read(fd, 1 << 16):
            data += chunk
    finally:
        os.close(fd)
    return data


def children(pid, tids=None):
    """Direct children of `pid` (all its threads), via /proc/PID/task/TID/children."""
    kids = []
    try:
        for tid in tids or os.listdir(f"/proc/{pid}/task"):
            kids += [int(k) for k in read_all(f"/proc/{pid}/task/{tid}/children").split()]
    except OSError:
        pass
    return kids


def descendants(pid):
    out = children(pid)
    for p in out:  # the list grows while we walk it: breadth first
        out += children(p)
    return out


def kill_descendants(keep=None):
    """SIGKILL and reap every descendant of W but `keep` and its subtree. W is a child subreaper:
    setsid'd / double-forked orphans come back to W and are found on the next pass."""
    me = _getpid()
    while True:
        roots = [k for k in children(me, [me]) if k != keep]  # W has a single thread
        if not roots:
            return
        for pid, kill in [(p, k) for r in roots for p in [r] + descendants(r) for k in (os.killpg, os.kill)]:
            try:
                kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for pid in roots:
            os.waitpid(pid, 0)  # roots are W's own children


# ------------------------------------------------------------------ inside C and T_i
def _record(text):
    return text.encode().ljust(REC, b" ")


def _read_record(fd):
    return read_exact(fd, REC, lambda: _exit(71)).decode().split()


def describe(exc):
    """First line of an exception as 'Type: message', at most 300 characters."""
    try:
        text = _str(exc).strip()
        line = f"{_type(exc).__name__}: {text.splitlines()[0]}" if text else _type(exc).__name__
        return _str(line)[:300]
    except _BaseException:
        return "exception (unprintable)"


def _compile(source, name):
    try:
        return compile(source, name, "exec")
    except _BaseException as e:  # a broken test is an "error" of its own
        return e


def _hex(text):
    return text.encode("utf-8", "backslashreplace").hex()


def can_drop_to(uid, gid):
    """Whether this (root) process may switch to uid/gid: probed in a throwaway child."""
    if (pid := _fork()) == 0:
        try:
            os.setgroups([]), os.setgid(gid), os.setuid(uid)
        finally:
            _exit(0 if os.getuid() == uid else 1)
    return os.waitpid(pid, 0)[1] == 0


def confine_worker(cfg):
    """What every candidate inherits, set once in W (W forks C only; doing it per C cost ~0.8 ms)."""
    mib = 1 << 20
    for res, lim in ((resource.RLIMIT_AS, cfg["memory_mb"] * mib), (resource.RLIMIT_FSIZE, cfg["file_mb"] * mib),
                     (resource.RLIMIT_NOFILE, cfg["open_files"]), (resource.RLIMIT_NPROC, cfg["nproc"]),
                     (resource.RLIMIT_CORE, 0)):
        if lim is not None:
            resource.setrlimit(res, (lim, lim))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write raises OSError instead
    prctl(PR_SET_NO_NEW_PRIVS, 1)  # no set-uid binary can give a candidate its privileges back
    if cfg["uid"] is not None:
        # the interpreter may live under a directory the sandbox uid cannot enter (/root/.pyenv):
        # keep each import dir open (fds 6, 7, ...) and import via /proc/self/fd/N, which does
        # not check the ancestors
        sys.path[:] = [f"/proc/self/fd/{os.open(p, os.O_PATH | os.O_DIRECTORY)}" if os.path.isdir(p) else p
                       for p in sys.path]
    return os.open(os.devnull, os.O_RDONLY)  # the first fd not to keep in C


def run_one(test, ns):
    """(outcome, message) of one compiled test statement run in namespace `ns`."""
    try:
        if _isinstance(test, _BaseException):
            raise test
        _exec(test, ns)
        return "passed", ""
    except _AssertionError as e:
        return "failed", describe(e)
    except _BaseException as e:
        return "error", describe(e)


def test_main(start, stop, compiled, ns, cmd_r, res_w):
    """T_i (or C): run tests start..stop-1 one after another in this process ("test" isolation:
    one; "program": all the rest, in C), each reported with the nonce W sends for it, read only
    once the test has finished. Between tests it waits for W's "next" record."""
    me = _getpid()
    _setpgid(0, 0)  # (no prctl here: a ctypes call in a fresh fork costs 0.25 ms of COW)
    for i in _range(start, stop):
        if i > start and _read_record(cmd_r)[0] != "next":
            _exit(0)
        outcome, msg = run_one(compiled[i], ns)
        if _getpid() != me:  # a fork made by the test itself: never reports
            _exit(0)
        kind, nonce = _read_record(cmd_r)[:2]
        if kind == "nonce":
            _write(res_w, f"@@T {nonce} {i} {outcome} {_hex(msg)}\n".encode())
    _exit(0)


def candidate_main(cfg, scratch, program, tests, cmd_r, res_w, ctag):
    """C: confine, compile, run setup+code once, then fork one T_i per 'go i' command."""
    me = _getpid()

    def say(text):
        _write(res_w, ctag + text.encode() + b"\n")

    os.setpgid(0, 0)  # W's fds: 0, 1 and 5 /dev/null, 2 stderr, 3-4 main's pipes, 6.. import dirs
    for src, dst in ((5, 2), (cmd_r, 3), (res_w, 4)):
        os.dup2(src, dst)
    cmd_r, res_w = 3, 4
    os.close(5)
    os.closerange(cfg["first_free_fd"], 1 << 16)
    compiled = [_compile(t, f"<test {i}>") for i, t in enumerate(tests)]
    module = types.ModuleType("__candidate__")
    sys.modules["__candidate__"] = sys.modules["__main__"] = module  # hide this harness
    try:  # cwd, environment and rlimits come from W
        if cfg["uid"] is not None:  # root ignores RLIMIT_NPROC and file permissions
            os.setgroups([])
            os.setgid(cfg["gid"])
            os.setuid(cfg["uid"])
        _exec(compile(program, "<candidate>", "exec"), module.__dict__)
    except _BaseException as e:
        if _getpid() == me:
            say(f"codeerror {_hex(describe(e))}")
        _exit(0)
    if _getpid() != me:
        _exit(0)
    _freeze()  # the tests' collector never walks (and copies) the program's objects
    say("ready")
    while True:
        cmd = _read_record(cmd_r)
        if cmd[0] not in ("last", "go", "seq"):
            continue
        i = _int(cmd[1])
        stop = _len(compiled) if cmd[0] == "seq" else i + 1
        if cmd[0] != "go":  # "last", "seq": C is discarded after these: run them here, no fork
            test_main(i, stop, compiled, module.__dict__, cmd_r, res_w)
        pid = _fork()
        if pid == 0:
            test_main(i, stop, compiled, module.__dict__, cmd_r, res_w)
            _exit(0)
        _, status = _waitpid(pid, 0)
        say(f"reaped {i} {_wstatus(status)}")


# ------------------------------------------------------------------ W: one candidate, seen from W
class Candidate:
    """W's handle on one C: its pipes, a pidfd to notice its death, and the line parser."""

    def __init__(self, cfg, scratch, program, tests):
        rand = os.urandom(16 * len(tests) + 8).hex()  # one getrandom: C's tag, a nonce per test
        self.ctag, self.nonces = f"@@C {rand[:16]} ".encode(), [rand[16 + 32 * i:48 + 32 * i] for i in range(len(tests))]
        cmd_r, self.cmd_w = os.pipe()  # W's fds 0-5 stay open, so pipes never land on 3 or 4
        self.res_r, res_w = os.pipe()
        self.buf, self.dead, self.eof, self.lines = b"", False, False, collections.deque()
        self.pid = _fork()
        if self.pid == 0:
            try:
                candidate_main(cfg, scratch, program, tests, cmd_r, res_w, self.ctag)
            finally:
                _exit(70)
        os.close(cmd_r), os.close(res_w)
        os.set_blocking(self.res_r, False)
        self.pidfd = os.pidfd_open(self.pid)

    def close(self):
        os.close(self.cmd_w), os.close(self.res_r), os.close(self.pidfd)

    def _lines(self, wait):
        """Complete lines that arrived within `wait` seconds (garbage included), queued in
        self.lines. C is dead only when its pidfd says so: a closed result pipe alone does not
        end the wait."""
        ready = select.select([self.pidfd] + [self.res_r] * (not self.eof), [], [], wait)[0]
        self.dead = self.dead or self.pidfd in ready  # what C wrote before dying is in the pipe
        while not self.eof and (self.dead or self.res_r in ready) and len(self.buf) < 1 << 20:
            try:  # (res_r is non-blocking)
                data = os.read(self.res_r, 1 << 16)
            except BlockingIOError:
                break
            self.eof, self.buf = not data, self.buf + data
        *lines, self.buf = self.buf.split(b"\n")
        self.buf = self.buf[-8192:]  # a real line is written at once and is < 4 KiB
        self.lines += lines

    def wait_for(self, want, deadline, tag=b"\0", early=False):
        """(fields of C's first line with want(fields), or "timeout" / "dead" / "frame"; the test's
        frame after `tag` if it came). early: return as soon as the frame came."""
        frame = None
        while True:
            while self.lines:
                line = self.lines.popleft()
                if tag in line:
                    frame = line[line.rfind(tag) + len(tag):]
                    if early:
                        return "frame", frame
                elif self.ctag in line:
                    fields = line[line.rfind(self.ctag) + len(self.ctag):].decode(errors="replace").split()
                    if want(fields):
                        return fields, frame
            if self.dead:
                return "dead", frame
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout", frame
            self._lines(left)

    def _ask(self, head, i, budget, want, early=False):
        nonce = self.nonces[i]
        os.write(self.cmd_w, _record(head) + _record(f"nonce {nonce}"))
        return self.wait_for(want, time.monotonic() + budget, f"@@T {nonce} {i} ".encode(), early)

    def run_test(self, i, budget, last):
        """(outcome, message) of test i within `budget` s. The last test runs in C itself (C is
        discarded anyway): one fork less, and W reads C's exit status directly."""
        want = (lambda f: False) if last else (lambda f: f[:2] == ["reaped", str(i)])
        got, frame = self._ask(f"{'last' if last else 'go'} {i}", i, budget, want)
        if got == "timeout":
            return "timeout", f"timeout after {budget:.2f} s"
        if got == "dead" and not last:
            return "error", DIED
        status = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1]) if last else int(got[2])
        return (ended(status) if frame is None or status != 0 else parse(frame))

    def run_seq(self, start, n, budget):
        """isolation="program": [(outcome, message)] of tests start, start+1, ... run one after
        another in C itself, each within `budget` s; the list ends with the first test that timed
        out or ended C (the caller goes on in a fresh C)."""
        out = []
        for i in range(start, n):
            got, frame = self._ask(f"seq {i}" if i == start else "next", i, budget, lambda f: False, early=True)
            if got == "frame":
                out.append(parse(frame))
            elif got == "timeout":
                out.append(("timeout", f"timeout after {budget:.2f} s"))
                break
            else:  # C ended without reporting test i
                out.append(ended(os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])))
                break
        return out


DIED = "sandbox process died (the candidate killed its parent or process group?)"


def ended(status):
    how = f"killed by signal {-status}" if status < 0 else f"exit status {status}"
    return "error", f"test ended without a result ({how})"


def parse(frame):
    outcome, msg = frame.decode().split(" ", 1)
    return outcome, bytes.fromhex(msg).decode()


def start_candidate(cfg, scratch, program, tests, timeout):
    """(Candidate, seconds used) once setup+code ran, or (None, (outcome, message))."""
    start = time.monotonic()
    cand = Candidate(cfg, scratch, program, tests)
    got, _ = cand.wait_for(lambda f: f[:1] in (["ready"], ["codeerror"]), start + timeout)
    if got == ["ready"]:
        return cand, time.monotonic() - start
    kill_descendants()
    cand.close()
    why = {"timeout": ("timeout", f"timeout after {timeout:.2f} s (running the program)"),
           "dead": ("error", "program ended early (os._exit, a crash or a kill)")}
    return None, why[got] if _isinstance(got, str) else ("error", bytes.fromhex(got[1]).decode())


def restore_scratch(scratch, baseline):
    """Remove what a test added to the scratch dir (the program's own files stay as they are)."""
    for name in os.listdir(scratch):
        if name not in baseline:
            path = os.path.join(scratch, name)
            shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)


def run_job(cfg, setup, code, tests, timeout, isolation="test"):
    """Outcomes of every test and the first non-pass message; cleans everything up. isolation
    "test": one T per test (fresh program state each); "program": the tests share C (and a
    fresh C after a test that hung or ended it)."""
    scratch = os.path.join(cfg["tmp"], "job-" + os.urandom(8).hex())
    os.mkdir(scratch, 0o700)
    if cfg["uid"] is not None:
        os.chown(scratch, cfg["uid"], cfg["gid"])
    os.chdir(scratch)  # C inherits these
    for key in ("HOME", "TMPDIR", "PWD"):
        os.environ[key] = scratch
    program, n = setup + "\n" + code, len(tests)
    outcomes, error, cand = [], None, None
    try:
        while len(outcomes) < n:
            i = len(outcomes)
            if cand is None:
                cand, used = start_candidate(cfg, scratch, program, tests, timeout)
                if cand is None:  # the program itself failed: every remaining test shares it
                    outcomes += [used[0]] * (n - i)
                    return tuple(outcomes), error or used[1]
                baseline = set(os.listdir(scratch))
            in_c = isolation == "program" or i == n - 1  # runs in C itself: C is discarded after it
            results = (cand.run_seq(i, n, timeout - used) if isolation == "program"
                       else [cand.run_test(i, timeout - used, in_c)])
            for j, (outcome, msg) in enumerate(results, i):
                outcomes.append(outcome)
                if outcome != "passed" and error is None:
                    error = f"{msg} [test {j}]"
            if cand.dead and not in_c:  # the whole job is void: report it as an error
                return ("error",) * n, msg
            if len(outcomes) == n:  # `finally` cleans up
                break
            kill_descendants(keep=None if outcome == "timeout" or in_c else cand.pid)
            if outcome == "timeout" or in_c:  # C is gone, or may be stuck: a fresh one for the next test
                cand.close()
                cand = None
            restore_scratch(scratch, baseline)
        return tuple(outcomes), error
    finally:
        kill_descendants()
        if cand is not None:
            cand.close()
        try:
            os.rmdir(scratch)  # usually empty: one syscall
        except OSError:
            shutil.rmtree(scratch, ignore_errors=True)


def main():
    cfg = json.loads(sys.argv[1])
    req, rsp, devnull = os.dup(0), os.dup(1), os.open(os.devnull, os.O_RDWR)
    assert (req, rsp, devnull) == (3, 4, 5), "the worker expects fds 0-2 only at start"
    os.dup2(devnull, 0), os.dup2(devnull, 1)
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    sys.path += [p for p in cfg["site"] if p not in sys.path]  # started with -S: no .pth code runs
    if cfg["uid"] is not None and not can_drop_to(cfg["uid"], cfg["gid"]):
        cfg["uid"] = None  # e.g. a container without CAP_SETUID: run as we are
    cfg["first_free_fd"] = confine_worker(cfg)
    os.close(cfg["first_free_fd"])
    for name in PRELOAD:
        __import__(name)
    # the first compile() of a process builds the AST types (~1.3 ms, 2+ ms of copy-on-write in
    # a fork): pay it once here, not in every C
    compile("def f(x, *a, **k):\n    return [y for y in x if y], {1: f'{x!r}'}, lambda: (yield)\n"
            "assert f(1) == 2, 'm'\n", "<warm-up>", "exec")
    gc.collect()
    gc.freeze()  # no copy-on-write of the worker's objects by the children's collector
    write_frame(rsp, ("hello", os.getpid()))
    while (msg := read_frame(req)) is not None:
        job_id, setup, code, tests, timeout, *rest = msg  # (a parent older than isolation sends 5)
        isolation = rest[0] if rest else "test"
        try:
            outcomes, error = run_job(cfg, setup, code, tests, timeout, isolation)
        except Exception as e:  # a bug here must not take the worker down silently
            outcomes, error = ("error",) * len(tests), f"sandbox worker error: {describe(e)}"
        write_frame(rsp, (job_id, outcomes, error))
    kill_descendants()


if __name__ == "__main__":
    main()
