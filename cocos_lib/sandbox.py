"""The sandbox worker: a pristine, stdlib-only interpreter that runs model-written code.

`cocos_lib.executor` starts one per slot as `python -I sandbox.py CONFIG_JSON` (never as part of
the package: it imports no project module and never torch). Per job the process tree is

    W  this worker: trusted, never runs candidate code, child subreaper (orphans come back to W)
    `-- C  candidate (fork of W): scratch cwd, minimal env, rlimits, unprivileged uid;
        |   runs program = setup + "\\n" + code ONCE
        `-- T_i  one fork of C per test u_i: runs the test statement in C's state, so every
                 test behaves as if the program had just been run fresh and then that test.

Result channel: W writes "go i" and a fresh random nonce (16 bytes from os.urandom) into C's
command pipe; T_i reads the nonce only AFTER its test has finished, and reports
"@@T <nonce> i outcome msg". W accepts an outcome only with that nonce, and only once C has
reaped T_i with exit status 0. Text a candidate writes to any file descriptor without the
nonce is ignored; an early exit (sys.exit, os._exit, a crash) never reports. (Code that reads
this harness's own pipes or memory from inside its process could forge a result; nothing
in-process can prevent that, see the executor's docstring.)
Timeouts are wall-clock, enforced here (no SIGALRM); after every test W kills and reaps every
descendant except C, and after every job everything.
"""
import builtins, ctypes, gc, json, marshal, os, resource, select, shutil, signal, struct, sys, time, types

# Imported once here so that candidates find them loaded. Each module loaded here makes every
# fork dearer, so only cheap, common ones; never `random` or `tempfile` (random re-seeds itself
# in every forked child: +0.2 ms CPU per test).
PRELOAD = ("typing", "re", "collections", "math", "itertools", "functools", "heapq", "bisect", "string")
PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 36, 38
REC = 64  # command records W -> C / T_i have this fixed size (atomic pipe writes, exact reads)
_fork, _exit, _read, _write, _getpid, _waitpid = os.fork, os._exit, os.read, os.write, os.getpid, os.waitpid
_setpgid, _wstatus, _freeze = os.setpgid, os.waitstatus_to_exitcode, gc.freeze
# the harness code that runs after candidate code uses only these (a candidate may patch builtins)
_exec, _AssertionError, _BaseException = builtins.exec, AssertionError, BaseException
_len, _int, _str, _type, _isinstance = len, int, str, type, isinstance
_libc = ctypes.CDLL(None, use_errno=True)


def prctl(option, arg):
    if _libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


# ------------------------------------------------------------------ W <-> main process framing
def read_exact(fd, n):
    buf = b""
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def read_frame(fd):
    head = read_exact(fd, 4)
    return None if head is None else marshal.loads(read_exact(fd, struct.unpack(">I", head)[0]))


def write_frame(fd, obj):
    data = marshal.dumps(obj)
    data = struct.pack(">I", len(data)) + data
    while data:
        data = data[os.write(fd, data):]


# ------------------------------------------------------------------ process-tree hygiene (in W)
def children(pid, tids=None):
    """Direct children of `pid` (all its threads), via /proc/PID/task/TID/children."""
    kids = []
    try:
        for tid in tids or os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(k) for k in f.read().split()]
    except OSError:
        pass
    return kids


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        out += kids
        todo += kids
    return out


def kill_descendants(keep=None):
    """SIGKILL every descendant of W except `keep` (and keep's subtree), then reap them.
    W is a child subreaper, so setsid'd / double-forked orphans are re-parented to W and are
    found on the next pass; loop until only `keep` is left."""
    me = _getpid()
    while True:
        roots = [k for k in children(me, [me]) if k != keep]  # W has a single thread
        if not roots:
            return
        for pid in roots + [d for r in roots for d in descendants(r)]:
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        for pid in roots:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


# ------------------------------------------------------------------ inside C and T_i
def _record(text):
    return text.encode().ljust(REC, b" ")


def _read_record(fd):
    buf = b""
    while _len(buf) < REC:
        chunk = _read(fd, REC - _len(buf))
        if not chunk:
            _exit(71)
        buf += chunk
    return buf.decode().split()


def describe(exc):
    """First line of an exception as 'Type: message', at most 300 characters."""
    try:
        text = _str(exc).strip()
        line = f"{_type(exc).__name__}: {text.splitlines()[0]}" if text else _type(exc).__name__
        return _str(line)[:300]
    except _BaseException:
        return "exception (unprintable)"


def _hex(text):
    return text.encode("utf-8", "backslashreplace").hex()


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


def test_main(i, test, ns, cmd_r, res_w):
    """T_i: run test i once in the candidate's state, then report with the nonce read now."""
    me = _getpid()
    try:
        _setpgid(0, 0)  # (no prctl here: a ctypes call in a fresh fork costs 0.25 ms of COW)
        if _isinstance(test, _BaseException):
            raise test
        _exec(test, ns)
        outcome, msg = "passed", ""
    except _AssertionError as e:
        outcome, msg = "failed", describe(e)
    except _BaseException as e:
        outcome, msg = "error", describe(e)
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
    os.dup2(5, 2)
    os.dup2(cmd_r, 3)
    os.dup2(res_w, 4)
    cmd_r, res_w = 3, 4
    os.close(5)
    os.closerange(cfg["first_free_fd"], 1 << 16)
    try:  # cwd, environment and rlimits come from W
        if cfg["uid"] is not None:  # root ignores RLIMIT_NPROC and file permissions
            os.setgroups([])
            os.setgid(cfg["gid"])
            os.setuid(cfg["uid"])
        code = compile(program, "<candidate>", "exec")
    except _BaseException as e:
        say(f"codeerror {_hex(describe(e))}")
        _exit(0)
    compiled = []
    for i, t in enumerate(tests):
        try:
            compiled.append(compile(t, f"<test {i}>", "exec"))
        except _BaseException as e:
            compiled.append(e)
    module = types.ModuleType("__candidate__")
    sys.modules["__candidate__"] = sys.modules["__main__"] = module  # hide this harness
    try:
        _exec(code, module.__dict__)
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
        if cmd[0] == "last":  # C is discarded after the last test: run it here, no fork
            test_main(_int(cmd[1]), compiled[_int(cmd[1])], module.__dict__, cmd_r, res_w)
        elif cmd[0] == "go":
            i = _int(cmd[1])
            pid = _fork()
            if pid == 0:
                test_main(i, compiled[i], module.__dict__, cmd_r, res_w)
                _exit(0)
            _, status = _waitpid(pid, 0)
            say(f"reaped {i} {_wstatus(status)}")


# ------------------------------------------------------------------ W: one candidate, seen from W
class Candidate:
    """W's handle on one C: its pipes, a pidfd to notice its death, and the line parser."""

    def __init__(self, cfg, scratch, program, tests):
        self.ctag = f"@@C {os.urandom(8).hex()} ".encode()
        cmd_r, self.cmd_w = os.pipe()  # W's fds 0-5 stay open, so pipes never land on 3 or 4
        self.res_r, res_w = os.pipe()
        self.buf, self.dead, self.eof = b"", False, False
        self.pid = _fork()
        if self.pid == 0:
            try:
                candidate_main(cfg, scratch, program, tests, cmd_r, res_w, self.ctag)
            finally:
                _exit(70)
        os.close(cmd_r)
        os.close(res_w)
        self.pidfd = os.pidfd_open(self.pid)

    def close(self):
        for fd in (self.cmd_w, self.res_r, self.pidfd):
            os.close(fd)

    def _lines(self, wait):
        """Complete lines that arrived within `wait` seconds (garbage included). C is dead only
        when its pidfd says so: a closed result pipe alone does not end the wait."""
        ready = select.select([self.pidfd] + [self.res_r] * (not self.eof), [], [], wait)[0]
        self.dead = self.dead or self.pidfd in ready  # what C wrote before dying is in the pipe
        if self.dead and not self.eof:
            ready = select.select([self.res_r], [], [], 0)[0]
        while not self.eof and self.res_r in ready and len(self.buf) < 1 << 20:
            data = os.read(self.res_r, 1 << 16)
            self.eof, self.buf = not data, self.buf + data
            ready = select.select([self.res_r], [], [], 0)[0]
        *lines, self.buf = self.buf.split(b"\n")
        self.buf = self.buf[-8192:]  # a real line is written at once and is < 4 KiB
        return lines

    def wait_for(self, want, deadline, tag=b"\0"):
        """Fields of C's first line for which want(fields) holds (plus the payload after `tag`,
        the test's nonce frame, if it came), or "timeout" / "dead"."""
        frame = None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout", frame
            for line in self._lines(left):
                if tag in line:
                    frame = line[line.rfind(tag) + len(tag):]
                elif self.ctag in line:
                    fields = line[line.rfind(self.ctag) + len(self.ctag):].decode(errors="replace").split()
                    if want(fields):
                        return fields, frame
            if self.dead:
                return "dead", frame

    def run_test(self, i, budget, last):
        """(outcome, message) of test i, at most `budget` seconds of wall clock. The last test
        runs in C itself (C is discarded anyway) and W reads C's exit status directly."""
        nonce = os.urandom(16).hex()
        os.write(self.cmd_w, _record(f"{'last' if last else 'go'} {i}") + _record(f"nonce {nonce}"))
        want = (lambda f: False) if last else (lambda f: f[:2] == ["reaped", str(i)])
        got, frame = self.wait_for(want, time.monotonic() + budget, f"@@T {nonce} {i} ".encode())
        if got == "timeout":
            return "timeout", f"timeout after {budget:.2f} s"
        if got == "dead" and not last:
            return "error", "sandbox process died (the candidate killed its parent or process group?)"
        status = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1]) if last else int(got[2])
        if frame is None or status != 0:
            how = f"killed by signal {-status}" if status < 0 else f"exit status {status}"
            return "error", f"test ended without a result ({how})"
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
    if got == "timeout":
        return None, ("timeout", f"timeout after {timeout:.2f} s (running the program)")
    if got == "dead":
        return None, ("error", "program ended early (os._exit, a crash or a kill)")
    return None, ("error", bytes.fromhex(got[1]).decode())


def restore_scratch(scratch, baseline):
    """Remove what a test added to the scratch dir, so the next test sees the program's files
    only (files the program itself made are kept as they are, contents included)."""
    for name in os.listdir(scratch):
        if name not in baseline:
            path = os.path.join(scratch, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)


def run_job(cfg, setup, code, tests, timeout):
    """Outcomes of every test and the first non-pass message; cleans everything up."""
    scratch = os.path.join(cfg["tmp"], "job-" + os.urandom(8).hex())
    os.mkdir(scratch, 0o700)
    if cfg["uid"] is not None:
        os.chown(scratch, cfg["uid"], cfg["gid"])
    os.chdir(scratch)  # C inherits these
    for key in ("HOME", "TMPDIR", "PWD"):
        os.environ[key] = scratch
    program = setup + "\n" + code
    outcomes, error, cand = [], None, None
    try:
        for i in range(len(tests)):
            if cand is None:
                cand, used = start_candidate(cfg, scratch, program, tests, timeout)
                if cand is None:  # the program itself failed: every remaining test shares it
                    outcomes += [used[0]] * (len(tests) - i)
                    return tuple(outcomes), error or used[1]
                baseline = set(os.listdir(scratch))
            last = i == len(tests) - 1
            outcome, msg = cand.run_test(i, timeout - used, last)
            outcomes.append(outcome)
            if outcome != "passed" and error is None:
                error = f"{msg} [test {i}]"
            if cand.dead and not last:  # the whole job is void: report it as an error
                return ("error",) * len(tests), msg
            if outcome == "timeout":
                kill_descendants()
                cand.close()
                cand = None
            else:
                kill_descendants(keep=cand.pid)
            restore_scratch(scratch, baseline)
        return tuple(outcomes), error
    finally:
        kill_descendants()
        if cand is not None:
            cand.close()
        shutil.rmtree(scratch, ignore_errors=True)


def main():
    cfg = json.loads(sys.argv[1])
    req, rsp = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    assert (req, rsp, devnull) == (3, 4, 5), "the worker expects fds 0-2 only at start"
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    sys.path += [p for p in cfg["site"] if p not in sys.path]  # started with -S: no .pth code runs
    cfg["first_free_fd"] = confine_worker(cfg)
    os.close(cfg["first_free_fd"])
    for name in PRELOAD:
        __import__(name)
    gc.collect()
    gc.freeze()  # no copy-on-write of the worker's objects by the children's collector
    write_frame(rsp, ("hello", os.getpid()))
    while True:
        msg = read_frame(req)
        if msg is None:
            break
        job_id, setup, code, tests, timeout = msg
        try:
            outcomes, error = run_job(cfg, setup, code, tests, timeout)
        except Exception as e:  # a bug here must not take the worker down silently
            outcomes, error = ("error",) * len(tests), f"sandbox worker error: {describe(e)}"
        write_frame(rsp, (job_id, outcomes, error))
    kill_descendants()


if __name__ == "__main__":
    main()
