"""The sandboxed executor: outcomes, isolation, caps, hostile programs, cleanup, bad input."""
import gc, os, signal, sys, threading, time, types, warnings

import pytest

from cocos_lib.executor import ALLOW_ENV, Executor, Job, TestReport, open_executor, run_tests
from sandbox_helpers import descendants, procs_with, uid_procs

ROOT = os.geteuid() == 0


ADD = "def add(a, b):\n    return a + b if a < 5 else a - b\n"


def test_outcomes_in_order_and_first_error(executor):
    r = executor.run(ADD, ["assert add(1, 2) == 3", "assert add(10, 1) == 11", "add(None, 1)", "assert add(2, 2) == 4"])
    assert r.outcomes == ("passed", "failed", "error", "passed")
    assert r.passed == (True, False, False, True) and r.n_passed == 2 and r.fraction == 0.5 and not r.all_passed
    assert r.error == "AssertionError [test 1]"
    r = executor.run(ADD, ["assert add(10, 1) == 11, 'ten'", "add(None, 1)"])
    assert r.error == "AssertionError: ten [test 0]"
    assert executor.run(ADD, ["add(None, 1)"]).error.startswith("TypeError: '<' not supported")
    assert TestReport(()).fraction == 0.0 and not TestReport(()).all_passed


def test_program_errors_make_every_test_error(executor):
    r = executor.run("def f(:\n  pass", ["assert True", "assert True"])
    assert r.outcomes == ("error", "error") and r.error.startswith("SyntaxError")
    r = executor.run("x = 1 / 0", ["assert True"] * 3)
    assert r.outcomes == ("error",) * 3 and r.error == "ZeroDivisionError: division by zero"
    r = executor.run("x = 1", ["assert x ==", "assert x == 1"])  # a broken test errors alone
    assert r.outcomes == ("error", "passed")


def test_setup_runs_before_code_and_main_blocks_do_not_run(executor):
    r = executor.run("def g():\n    return helper() + 1", ["assert g() == 3"], setup="def helper():\n    return 2")
    assert r.outcomes == ("passed",)
    r = executor.run("if __name__ == '__main__':\n    input()", ["assert __name__ == '__candidate__'"])
    assert r.outcomes == ("passed",)


@pytest.mark.parametrize("exit_code", ["import sys; sys.exit(0)", "import os; os._exit(0)", "raise SystemExit",
                                       "raise KeyboardInterrupt", "import ctypes; ctypes.string_at(0)",
                                       "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"])
def test_early_exits_are_not_passes(executor, exit_code):
    in_test = executor.run("x = 1", [exit_code, "assert x == 1"])
    assert in_test.outcomes == ("error", "passed")
    as_last_test = executor.run("x = 1", ["assert x == 1", exit_code])
    assert as_last_test.outcomes == ("passed", "error")
    in_program = executor.run(exit_code, ["assert True", "assert True"])
    assert in_program.outcomes == ("error", "error")


def test_timeout_is_wall_clock_and_ignores_signals(executor):
    code = "import signal, time\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM):\n    signal.signal(s, signal.SIG_IGN)\n"
    start = time.monotonic()
    r = executor.run(code, ["while True: pass", "time.sleep(30)", "assert 1"], timeout_s=0.5)
    assert r.outcomes == ("timeout", "timeout", "passed")
    assert r.error.startswith("timeout after")
    assert time.monotonic() - start < 4
    r = executor.run("while True: pass", ["assert 1", "assert 1"], timeout_s=0.3)  # the program itself loops
    assert r.outcomes == ("timeout", "timeout")


def test_program_start_up_has_its_own_budget_and_tests_count_cpu_time(executor):
    # (was "timeout counts program + test": the program's 0.4 s ate the test's 0.6 s of wall clock.
    # Now the program's start-up has a budget of its own and a test counts the CPU time it used, so a
    # loaded machine does not turn slow starts into timeouts; a wall-clock backstop of 2 x + 0.5 s stays)
    r = executor.run("import time\ntime.sleep(0.4)", ["time.sleep(0.4)", "assert 1"], timeout_s=0.6)
    assert r.outcomes == ("passed", "passed")
    r = executor.run("import time\ntime.sleep(0.4)", ["time.sleep(2)", "while True: pass", "assert 1"], timeout_s=0.6)
    assert r.outcomes == ("timeout", "timeout", "passed")
    assert r.error == "timeout: no result after 1.70 s (wall-clock backstop) [test 0]"
    r = executor.run("import time\ntime.sleep(0.4)", ["while True: pass"], timeout_s=0.6)
    assert r.error == "timeout after 0.60 s of CPU time [test 0]"


@pytest.fixture(scope="module")
def ex_count():
    """Untrusted passes counted (Executor(untrusted="count")): for tests about what a test that runs
    inside the candidate sees, not about whether its pass is paid."""
    with Executor(workers=2, untrusted="count") as e:
        yield e


def test_each_test_sees_the_program_fresh(ex_count):
    code = ("L = []\nimport math\ndef push(x):\n    L.append(x)\n    return len(L)\n"
            "def probe():\n    return len([1]), math.pi > 3.14\n")
    tests = ["assert push(1) == 1", "assert push(1) == 1", "import builtins; builtins.len = lambda x: 0",
             "math.pi = 3; open('f.txt', 'w').write('x')", "assert probe() == (1, True)",
             "import os; assert not os.path.exists('f.txt')", "assert push(1) == 1"]
    r = ex_count.run(code, tests)
    assert r.outcomes == ("passed",) * 7 and r.trusted == (True, True, False, False, True, True, True)


def test_nothing_leaks_between_candidates():
    with Executor(workers=1, untrusted="count") as ex1:  # one worker: the second job runs where the first ran
        dirty = ("import builtins, math, os, sys\nbuiltins.abs = lambda x: 42\nmath.sqrt = None\n"
                 "sys.modules['json'] = None\nopen('leak.txt', 'w').write('x')\nGLOBAL = 1\n"
                 "def probe():\n    return abs(-1)\n")
        # the program patched its own builtins (probe sees them); the judge's abs is its own
        assert ex1.run(dirty, ["assert probe() == 42", "assert abs(-1) == 1"]).outcomes == ("passed", "passed")
        clean = ["assert abs(-1) == 1", "import math; assert math.sqrt(4) == 2", "import json",
                 "import os; assert os.listdir('.') == []", "assert 'GLOBAL' not in globals()"]
        assert ex1.run("", clean).outcomes == ("passed",) * 5


def test_scratch_dir_is_fresh_private_and_removed(executor):
    # the job's cwd (= HOME = TMPDIR) is /tmp of the sandbox's own root: a fresh tmpfs per job,
    # not the host's /tmp (the old design's premise, a job dir under the host's /dev/shm, is gone)
    marker = "cocos-scratch-" + os.urandom(4).hex()
    r = executor.run(f"import os\nCWD = os.getcwd()\nopen('{marker}', 'w').write('x')",
                     [f"assert os.listdir('.') == ['{marker}'] and os.environ['HOME'] == CWD", "assert False, CWD"])
    assert r.outcomes == ("passed", "failed") and r.error == "AssertionError: /tmp [test 1]"
    assert not os.path.exists(f"/tmp/{marker}") and not os.path.exists(f"/dev/shm/{marker}")
    assert executor.run("import os", ["assert os.listdir('.') == [] == os.listdir('/tmp')"] * 2).outcomes == ("passed",) * 2


def test_the_judge_sees_each_jobs_fresh_scratch_dir(executor):
    # the judge has a mount namespace of its own (its own /proc): each job's fresh /tmp reaches it
    # by mount propagation, so a trusted test reads what this job's program wrote, nothing older
    jobs = [Job(f"open('f{i}', 'w').write('{i}')",
                [f"import os\nassert os.listdir('/tmp') == ['f{i}'] and open('f{i}').read() == '{i}', os.listdir('.')"])
            for i in range(6)]
    reports = executor.run_many(jobs)
    assert [r.outcomes for r in reports] == [("passed",)] * 6 and all(r.all_trusted for r in reports)


def test_stdin_closed_and_output_discarded(executor):
    r = executor.run("import sys\nprint('x' * 10**6)\nsys.stderr.write('y' * 10**6)",
               ["assert sys.stdin.read() == ''", "input()", "print('z' * 10**7); assert True"])
    assert r.outcomes == ("passed", "error", "passed") and "EOFError" in r.error


def test_minimal_environment_hides_parent_secrets(monkeypatch):
    monkeypatch.setenv("COCOS_TEST_SECRET", "hunter2")
    with Executor(workers=1) as ex1:
        r = ex1.run("import os", ["assert 'COCOS_TEST_SECRET' not in os.environ",
                                  "assert 'hunter2' not in repr(dict(os.environ))",
                                  "assert set(os.environ) <= {'PATH', 'LANG', 'LC_ALL', 'HOME', 'TMPDIR', 'PWD',"
                                  " 'OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'}"])
        assert r.outcomes == ("passed",) * 3
        # nor through /proc: the candidate's pid namespace holds its own processes, the judge's and
        # the namespace's init, nothing of this process (the old premise, a readable ancestor
        # chain up to this pid, is gone with the pid namespace)
        peek = ("import os\ndef pids():\n    return sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
                "def environs():\n    out = []\n    for p in pids():\n        try:\n"
                "            out.append(open(f'/proc/{p}/environ', 'rb').read())\n        except OSError:\n"
                "            pass\n    return out\n")
        r = ex1.run(peek, ["assert len(pids()) <= 5 and 1 in pids()", "assert not any(b'hunter2' in e for e in environs())",
                           f"assert not os.path.exists('/proc/{os.getpid()}/environ')"])
        assert r.outcomes == ("passed",) * 3


def test_resource_caps():
    with Executor(workers=1, memory_mb=512, file_mb=1, open_files=64, max_procs=16) as ex1:
        r = ex1.run("import os", ["x = bytearray(1024 ** 3)",
                                  "open('big', 'wb').write(b'x' * (2 << 20))",
                                  "fs = [open('f%d' % i, 'w') for i in range(100)]",
                                  "ps = [os.fork() for _ in range(40)]",
                                  "assert 1"], timeout_s=5)
    assert r.outcomes[:4] == ("error",) * 4 and r.outcomes[4] == "passed"
    assert r.error.startswith("MemoryError")


@pytest.mark.skipif(not ROOT, reason="privilege drop applies to root only")
def test_root_candidate_runs_unprivileged(executor):
    r = executor.run("import os", ["assert os.getuid() != 0 and os.geteuid() != 0",
                             "open('/etc/cocos-should-not-exist', 'w')",
                             "os.kill(1, 0)"])
    assert r.outcomes == ("passed", "error", "error")  # (the root is read-only; pid 1 is the namespace's init)
    assert "Read-only file system" in r.error and not os.path.exists("/etc/cocos-should-not-exist")


DAEMONS = """import os, subprocess, sys, time
SLEEP = [sys.executable, '-c', 'import time; time.sleep(60)']  # (no /bin/sleep in the sandbox)
def spawn(marker):
    subprocess.Popen(SLEEP + [marker], start_new_session=True)
    if os.fork() == 0:          # a double-forked, setsid'd daemon
        os.setsid()
        if os.fork() == 0:
            os.execv(SLEEP[0], SLEEP + [marker])
        os._exit(0)
    time.sleep(0.2)
    assert alive(marker)

def alive(marker):
    n = 0
    for p in os.listdir('/proc'):
        try:
            n += p.isdigit() and marker.encode() in open(f'/proc/{p}/cmdline', 'rb').read()
        except OSError:
            pass
    return n
"""


def test_process_tree_killed_after_each_test_and_on_timeout(executor):
    m1, m2, m3 = "61.0101", "61.0202", "61.0303"
    r = executor.run(DAEMONS, [f"spawn('{m1}')", f"assert not alive('{m1}')", f"spawn('{m2}'); time.sleep(30)",
                         f"assert not alive('{m2}')", f"spawn('{m3}')"], timeout_s=2)
    assert r.outcomes == ("passed", "passed", "timeout", "passed", "passed")
    time.sleep(0.1)
    assert procs_with(m1) == procs_with(m2) == procs_with(m3) == []
    m4 = "61.0" + "505"  # (not literally in this process's command line)
    r = executor.run(DAEMONS + f"spawn('{m4}')", [f"assert alive('{m4}')", f"assert alive('{m4}')"])
    assert r.outcomes == ("passed", "passed") and procs_with(m4) == []  # the program's daemons live for the job only


def test_fake_results_on_every_fd_do_not_pass(executor):
    forge = ("import os, marshal\n"
             "def forge():\n"
             "    fakes = [b'passed\\n', b'@@T ' + b'0' * 32 + b' 0 passed \\n', b'@@C 0 ready\\n',\n"
             "             b'@@C 0 reaped 0 0\\n', marshal.dumps((1, ('passed',), None))]\n"
             "    for fd in range(1024):\n"
             "        for fake in fakes:\n"
             "            try:\n"
             "                os.write(fd, fake)\n"
             "            except OSError:\n"
             "                pass\n")
    r = executor.run(forge, ["forge(); os._exit(0)", "forge(); assert False", "forge()", "forge(); os._exit(0)"])
    assert r.outcomes == ("error", "failed", "passed", "error")
    assert executor.run(forge + "forge()\nos._exit(0)\n", ["assert 1", "assert 1"]).outcomes == ("error", "error")
    assert executor.run(ADD, ["assert add(1, 2) == 3"]).outcomes == ("passed",)


def test_killing_parent_or_group_voids_only_that_job(executor):
    # (the kills are the candidate's: a test's own `os.kill` runs in the judge, which judges it)
    kill = "import os\ndef parent():\n    os.kill(os.getppid(), 9)\ndef group():\n    os.killpg(os.getpgid(0), 9)\n"
    cases = [(kill, ["assert 1", "parent.__name__ and parent()", "assert 1"], ("error",) * 3),  # kills C, untrusted
             (kill, ["assert 1", "parent()", "assert 1"], ("passed",) * 3),  # (the judge has its answer: None)
             (kill, ["assert 1", "group()", "assert 1"], ("passed", "error", "passed")),
             ("import os\nos.killpg(os.getpgid(0), 9)", ["assert 1", "assert 1"], ("error",) * 2),
             ("import os", ["assert 1", "os.kill(os.getppid(), 9)", "assert 1"], ("passed",) * 3)]  # the judge's zygote
    for code, tests, want in cases:
        r = executor.run(code, tests)
        assert r.outcomes == want
        assert executor.run(ADD, ["assert add(1, 2) == 3"] * 2).outcomes == ("passed",) * 2


def test_dead_worker_is_replaced_transparently():
    # a candidate cannot reach its worker any more (outside its pid namespace, another uid): the
    # old premise (the program kills W) is gone, so this kills the worker from outside mid-job
    with Executor(workers=1) as ex1:
        old = ex1._pool.workers[0]
        killer = threading.Timer(0.5, os.kill, (old.proc.pid, signal.SIGKILL))
        killer.start()
        jobs = [Job("import time\ntime.sleep(5)", ["assert 1"])] + [Job(ADD, ["assert add(1, 2) == 3"])] * 3
        reports = ex1.run_many(jobs)
        killer.join()
        assert reports[0].outcomes == ("error",) and "replaced" in reports[0].error
        assert [r.outcomes for r in reports[1:]] == [("passed",)] * 3
        new = ex1._pool.workers[0]
        assert new.proc.pid != old.proc.pid and not set(new.uids) & set(old.uids)  # a new generation
        assert uid_procs(old.uids) == []


@pytest.mark.parametrize("job, message", [
    (Job(123, ["assert 1"]), "code must be a str, got int"),
    (Job("x = 1\0", ["assert 1"]), "code contains a NUL byte at index 5"),
    (Job("s = '\ud800'", ["assert 1"]), "code is not valid text (lone surrogate at index 5)"),
    (Job("x = 1", ["assert 1", b"assert 1"]), "tests must be a sequence of str"),
    (Job("x = 1", "assert 1"), "tests must be a sequence of str"),
    (Job("x = 1", ["assert 1"], timeout_s=0), "timeout_s must be a positive number, got 0"),
    (Job("x = 1" + " " * 10_000_000, ["assert 1"]), "source too large: 10000013 characters > max_source_chars=1000000"),
    ({"code": "x = 1"}, "expected a Job, got dict"),
])
def test_bad_input_is_an_error_report_and_executor_keeps_working(executor, job, message):
    r, ok = executor.run_many([job, Job(ADD, ["assert add(1, 2) == 3"])])
    assert "passed" not in r.outcomes and r.error == message
    assert ok.outcomes == ("passed",)


def test_huge_messages_are_truncated(executor):
    r = executor.run("", ["assert False, 'x' * 10 ** 7", "raise ValueError('\\ud800' * 1000)"])
    assert r.outcomes == ("failed", "error") and len(r.error) < 400


def test_run_many_keeps_job_order_and_is_thread_safe(executor):
    def jobs(k):
        return [Job(f"def f():\n    return {k * 100 + i}", [f"assert f() == {k * 100 + i}", f"assert f() != {k * 100 + i}"])
                for i in range(12)]

    results = {}
    threads = [threading.Thread(target=lambda k=k: results.__setitem__(k, executor.run_many(jobs(k)))) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.outcomes == ("passed", "failed") for k in range(3) for r in results[k])
    assert executor.run_many([]) == []
    assert executor.run_many([Job("x = 1", [])]) == [TestReport(())]


def test_run_tests_convenience_and_no_process_left_after_close():
    before = descendants()
    assert run_tests(ADD, ["assert add(1, 2) == 3", "assert add(7, 1) == 8"]) == TestReport(("passed", "failed"), "AssertionError [test 1]")
    ex1 = Executor(workers=2)
    workers = {w.proc.pid for w in ex1._pool.workers}
    # per worker: its two pid namespaces' inits (and, without root, W itself: the process started
    # here only waits for it, see sandbox/startup.py)
    per = {"root": 2, "userns": 3}[ex1.describe()["mode"]]
    inits = {p for w in workers for p in descendants(w)}
    assert descendants() - before == workers | inits and len(inits) == 2 * per
    ex1.run_many([Job(DAEMONS, ["spawn('61.0404')", "spawn('61.0404')"])] * 4, progress=True)
    kids = {p for w in workers for p in descendants(w)}  # ... and its judge's zygote and judge, idle
    assert descendants() - before == workers | kids and len(kids) == 2 * per + 4 and inits < kids
    assert procs_with("61.0404") == []
    ex1.close()
    assert descendants() - before == set() and procs_with("61.0404") == []
    with pytest.raises(RuntimeError, match="closed"):
        ex1.run("x = 1", ["assert 1"])


def test_worker_is_stdlib_only(executor):
    import ast, glob, sys
    from cocos_lib.executor import sandbox

    files = glob.glob(os.path.join(os.path.dirname(sandbox.__file__), "*.py"))
    names = set()
    for path in files:
        tree = ast.parse(open(path).read())
        names |= {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
    assert len(files) >= 10 and names and names <= set(sys.stdlib_module_names)
    r = executor.run("import sys", ["assert not {'torch', 'numpy', 'cocos_lib'} & set(sys.modules)"])
    assert r.outcomes == ("passed",)


def test_garbage_collection_closes_the_pool():
    before = descendants()
    ex1 = Executor(workers=1)
    assert ex1.run("x = 1", ["assert x == 1"]).all_passed
    del ex1
    gc.collect()
    assert descendants() - before == set()


@pytest.mark.slow
def test_every_humaneval_canonical_solution_passes(executor):
    from cocos_lib.tasks import load_humaneval

    tasks = load_humaneval()
    reports = executor.run_many([Job(t.reference, t.tests, t.setup) for t in tasks])
    assert len(tasks) == 164 and sum(len(r.outcomes) for r in reports) > 1000
    assert [t.task_id for t, r in zip(tasks, reports) if not r.all_passed] == []


def test_wrong_humaneval_variants_fail_exactly_the_right_asserts(executor):
    from cocos_lib.tasks import load_humaneval

    tasks = {t.task_id: t for t in load_humaneval()}
    cases = {  # task: (wrong code, expected outcomes), worked out by hand from the asserts
        "HumanEval/0": ("def has_close_elements(numbers, threshold):\n    return True",
                        ("passed", "failed", "passed", "failed", "passed", "passed", "failed")),
        "HumanEval/2": ("def truncate_number(number):\n    return number - int(number) if number < 100 else 0.0",
                        ("passed", "passed", "failed")),
        "HumanEval/13": ("def greatest_common_divisor(a, b):\n    return min(a, b) if max(a, b) % min(a, b) == 0 else 1",
                         ("passed", "failed", "failed", "failed")),
        "HumanEval/2 ": ("def truncate_number(number):\n    return number.frac", ("error",) * 3),
    }
    jobs = [Job(code, tasks[k.strip()].tests, tasks[k.strip()].setup) for k, (code, _) in cases.items()]
    assert [r.outcomes for r in executor.run_many(jobs)] == [want for _, want in cases.values()]


CLOSE = "import os\nfor fd in range(3, 64):\n    try:\n        os.close(fd)\n    except OSError:\n        pass\n"


def test_closing_the_harness_pipes_does_not_hang(executor):
    code = "import time\ndef close():\n" + "".join("    " + line + "\n" for line in CLOSE.splitlines()) + \
        "    time.sleep(30)\n"
    r = executor.run(code, ["close()", "close()"], timeout_s=0.5)
    assert r.outcomes == ("timeout", "timeout")
    assert executor.run(CLOSE, ["assert 1", "assert 1"]).outcomes == ("error", "error")
    # a test that closes them itself runs in its job's judge: that judge cannot answer any more
    r = executor.run("import time", [CLOSE + "time.sleep(30)", "assert 1"], timeout_s=0.5)
    assert r.outcomes == ("error", "passed")
    assert r.error == "test ended without a result (the judge's process ended) [test 0]"


@pytest.fixture(scope="module")
def ex_program():
    """("program" isolation's tests share state through the candidate's objects: tests that reach
    into them run there, untrusted, and these count their passes)"""
    with Executor(workers=2, isolation="program", untrusted="count") as e:
        yield e


def test_isolation_must_be_test_or_program():
    with pytest.raises(ValueError, match=r"isolation must be one of \('test', 'program'\), got 'tests'"):
        Executor(workers=1, isolation="tests")


def test_program_isolation_shares_state_between_tests(executor, ex_program):
    code = "L = []\ndef push(x):\n    L.append(x)\n    return len(L)\n"
    tests = ["assert push(1) == 1", "assert push(1) == 1", "assert push(1) == 3", "assert len(L) == 3"]
    # "test": every assert sees the program fresh, so push() always returns 1
    assert executor.run(code, tests).outcomes == ("passed", "passed", "failed", "failed")
    # "program": the second assert sees the first's append (L == [1, 1] after it, [1, 1, 1] after the third)
    assert ex_program.run(code, tests).outcomes == ("passed", "failed", "passed", "passed")
    r = ex_program.run("import math", ["math.pi = 3", "assert math.pi == 3", "open('f', 'w').write('x')",
                                       "import os; assert os.path.exists('f')"])
    assert r.outcomes == ("passed",) * 4  # patched modules and files are visible to later tests too


@pytest.mark.parametrize("middle", ["while True: pass", "time.sleep(30)"])
def test_timeout_in_the_middle_test_costs_only_that_test_in_both_modes(executor, ex_program, middle):
    for e in (executor, ex_program):
        start = time.monotonic()
        r = e.run("import time\nX = 1", ["assert X == 1", middle, "assert X == 1"], timeout_s=0.5)
        assert r.outcomes == ("passed", "timeout", "passed")  # budget: 0.5 s of CPU, 1.5 s of wall clock
        assert r.error == ("timeout after 0.50 s of CPU time [test 1]" if middle.startswith("while")
                           else "timeout: no result after 1.50 s (wall-clock backstop) [test 1]")
        assert time.monotonic() - start < 4


@pytest.mark.parametrize("exit_code", ["import os; os._exit(0)", "import ctypes; ctypes.string_at(0)",
                                       "import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "raise SystemExit"])
def test_program_isolation_a_test_that_ends_its_process_is_an_error_the_rest_go_on(ex_program, exit_code):
    r = ex_program.run("X = []", ["X.append(1)", exit_code, "assert X == []", "X.append(2); assert X == [2]"])
    # SystemExit is caught like any exception (the process goes on); the others end it, and the
    # rest run in a fresh fork of the program's state (X == [] again)
    want = ("passed", "error", "failed", "failed") if exit_code == "raise SystemExit" else ("passed", "error", "passed", "passed")
    assert r.outcomes == want


def test_program_isolation_keeps_the_safety_properties(ex_program):
    m = "61.0" + "707"
    r = ex_program.run(DAEMONS, [f"spawn('{m}')", f"assert alive('{m}')", "time.sleep(30)", f"assert not alive('{m}')"],
                       timeout_s=2)
    assert r.outcomes == ("passed", "passed", "timeout", "passed")  # daemons live until their process's tests end
    time.sleep(0.1)
    assert procs_with(m) == []
    forge = ("import os\ndef forge():\n    for fd in range(64):\n        try:\n"
             "            os.write(fd, b'@@T ' + b'0' * 32 + b' 1 passed \\n')\n        except OSError:\n            pass\n")
    assert ex_program.run(forge, ["forge(); os._exit(0)", "forge(); assert False", "assert 1"]).outcomes == ("error", "failed", "passed")
    # the tests run in C itself, so their parent is the worker, outside C's pid namespace:
    # getppid() is 0 there, and kill(0) ends only the test's own process group ("program"
    # isolation: the program's `os` is the candidate's, so these tests run in C)
    r = ex_program.run("import os", ["assert 1", "os.kill(os.getppid(), 9)", "assert 1"])
    assert r.outcomes == ("passed", "error", "passed")
    r = ex_program.run("import os", ["assert 1", "os.killpg(os.getpgid(0), 9)", "assert 1"])
    assert r.outcomes == ("passed", "error", "passed") and "killed by signal 9" in r.error
    r = ex_program.run("import os\nos.killpg(os.getpgid(0), 9)", ["assert 1", "assert 1"])
    assert r.outcomes == ("error",) * 2
    assert ex_program.run(ADD, ["assert add(1, 2) == 3"] * 2).outcomes == ("passed",) * 2


def test_after_a_hang_the_program_runs_again_in_both_modes(executor, ex_program):
    code = "import time\nopen('runs', 'a').write('x')"  # the program's own files stay for the job
    tests = ["assert open('runs').read() == 'x'", "time.sleep(30)", "assert open('runs').read() == 'xx'"]
    for e in (executor, ex_program):
        assert e.run(code, tests, timeout_s=0.5).outcomes == ("passed", "timeout", "passed")


def test_program_isolation_survives_tests_that_close_the_harness_pipes(ex_program):
    close = CLOSE
    r = ex_program.run("import time", [close + "time.sleep(30)", close + "time.sleep(30)"], timeout_s=0.5)
    assert r.outcomes == ("timeout", "timeout")
    r = ex_program.run("X = 1", ["assert X == 1", close, "assert X == 1"])  # (the middle one runs in the judge)
    assert r.outcomes == ("passed", "error", "passed")
    assert r.error == "test ended without a result (the judge's process ended) [test 1]"
    assert ex_program.run(close, ["assert 1", "assert 1"]).outcomes == ("error", "error")


def test_wrong_humaneval_variants_agree_in_both_modes(executor, ex_program):
    from cocos_lib.tasks import load_humaneval

    tasks = {t.task_id: t for t in load_humaneval()}
    wrong = {"HumanEval/0": "def has_close_elements(numbers, threshold):\n    return True",
             "HumanEval/2": "def truncate_number(number):\n    return number - int(number) if number < 100 else 0.0",
             "HumanEval/13": "def greatest_common_divisor(a, b):\n    return min(a, b) if max(a, b) % min(a, b) == 0 else 1"}
    jobs = [Job(code, tasks[k].tests, tasks[k].setup) for k, code in wrong.items()]
    want = [("passed", "failed", "passed", "failed", "passed", "passed", "failed"), ("passed", "passed", "failed"),
            ("passed", "failed", "failed", "failed")]
    assert [r.outcomes for r in executor.run_many(jobs)] == [r.outcomes for r in ex_program.run_many(jobs)] == want


@pytest.mark.slow
def test_both_modes_agree_on_every_humaneval_canonical_solution(executor, ex_program):
    from cocos_lib.tasks import load_humaneval

    jobs = [Job(t.reference, t.tests, t.setup) for t in load_humaneval()]
    by_test, by_program = executor.run_many(jobs), ex_program.run_many(jobs)
    assert by_test == by_program and sum(len(r.outcomes) for r in by_program) == 1133
    assert all(r.all_passed for r in by_program)


# ------------------------------------------------------------------ open_executor (Colab and containers)
LOUD_NETNS = ("cocos executor: running candidates WITHOUT netns (see Executor.describe())\n"
              "  !! Model-written code now runs with fewer walls than designed. Do this only on a disposable\n"
              "  !! machine (a Colab runtime, a throwaway VM) or with code you trust. What is missing would have\n"
              "  !! stopped:\n"
              "  - netns (disabled by the configuration): network access (the internet, listeners on the host's "
              "127.0.0.1, its abstract unix sockets)")


@pytest.fixture
def no_opt_in(monkeypatch):
    from cocos_lib import executor as executor_mod

    monkeypatch.delenv(ALLOW_ENV, raising=False)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(executor_mod, "_warned", set())
    return monkeypatch


def fake_colab(monkeypatch):
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))


def test_open_executor_is_fully_confined_where_it_can_be(no_opt_in):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning at all
        with open_executor(workers=1, isolation="program") as ex1:
            d = ex1.describe()
            assert set(d["required"]) <= set(d["active"]) and set(d["missing"]) <= {"cgroup"}  # (cgroup: optional)
            assert ex1.allow_unconfined is False and d["isolation"] == "program"
            assert ex1.run(ADD, ["assert add(1, 2) == 3"]).outcomes == ("passed",)


def test_open_executor_refuses_outside_colab_in_one_line(no_opt_in):
    with pytest.raises(RuntimeError) as e:
        open_executor(workers=1, disable=("netns",))
    assert str(e.value) == ("Executor: cannot confine candidates here (netns: disabled by the configuration); pass "
                            f"allow_unconfined=True or set {ALLOW_ENV}=1 to run them anyway, only with code you trust")
    fake_colab(no_opt_in)
    with pytest.raises(RuntimeError, match=r"^Executor: cannot confine candidates here \(netns: "):
        open_executor(workers=1, disable=("netns",), allow_unconfined=False)  # an explicit no wins in Colab too


@pytest.mark.parametrize("how", ["colab", "env", "argument"])
def test_open_executor_runs_unconfined_only_when_allowed_and_says_so_loudly_once(no_opt_in, how):
    if how == "colab":
        fake_colab(no_opt_in)  # a Colab runtime: a disposable VM, allowed by default
    if how == "env":
        no_opt_in.setenv(ALLOW_ENV, "1")
    kw = {"allow_unconfined": True} if how == "argument" else {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ex2 = open_executor(workers=1, disable=("netns",), **kw)  # (a second one does not warn again)
        with open_executor(workers=1, disable=("netns",), **kw) as ex1, ex2:
            assert ex1.allow_unconfined is True
            assert ex1.describe()["missing"].get("netns") == "disabled by the configuration"
            r = ex1.run(ADD, ["assert add(1, 2) == 3", "assert add(7, 1) == 8"])
            assert r.outcomes == ("passed", "failed") and r.all_trusted  # the judge still decides
    assert [str(w.message) for w in caught] == [LOUD_NETNS] and caught[0].category is RuntimeWarning


# ------------------------------------------------------------------ untrusted outcomes are visible
def test_untrusted_share_counts_the_outcomes_decided_inside_the_candidate(executor):
    from cocos_lib.executor import untrusted_share

    reaches_in = "assert add(1, 2) == 3 and add.__name__ == 'add'"  # reads an attribute of the candidate's add
    jobs = [Job(ADD, ["assert add(1, 2) == 3", reaches_in]), Job(ADD, ["assert add(7, 1) == 8"])]
    reports = executor.run_many(jobs)
    # by default (untrusted="refuse") a pass decided inside the candidate is not paid: "error"
    assert [r.outcomes for r in reports] == [("passed", "error"), ("failed",)]
    assert reports[0].error == ("untrusted pass not counted: the test ran inside the candidate, which could have "
                                "forged it (Executor(untrusted='count') counts it) [test 1]")
    assert [r.trusted for r in reports] == [(True, False), (True,)]
    with Executor(workers=1, untrusted="count") as ex1:
        counted = ex1.run_many(jobs)
    assert [r.outcomes for r in counted] == [("passed", "passed"), ("failed",)] and untrusted_share(counted) == 1 / 3
    assert untrusted_share(reports) == 1 / 3 and untrusted_share([]) == 0.0
    assert untrusted_share([TestReport(("passed", "failed"))]) == 1.0  # a hand-made report is not trusted


def test_rollout_stats_carry_the_untrusted_share(tiny_policy, executor, monkeypatch):
    from cocos_lib import rollout as R
    from cocos_lib.rollout import RolloutConfig, rollout
    from cocos_lib.tasks import Task

    tok = tiny_policy.tokenizer
    code = tok(ADD + "\n[DONE]", add_special_tokens=False)["input_ids"]
    monkeypatch.setattr(R, "generate", lambda pol, prompt_ids, cfg, seed=None, backend="hf": [code] * len(prompt_ids))
    task = Task("t/0", "Write a function to add two numbers.",
                ("assert add(1, 2) == 3", "assert add(2, 2) == 4", "assert add(1, 1) == 2 and add.__name__ == 'add'"))
    stats = {}
    trajs = rollout(tiny_policy, [task], RolloutConfig(turns=2, k=2, share_first_turn=True), executor, stats=stats)
    # turn 1 runs once for the group (3 tests), turn 2 once per sample (6): one of 3 is untrusted each time
    assert [t.turns[1].report.trusted for t in trajs] == [(True, True, False)] * 2
    assert [t.turns[1].report.outcomes for t in trajs] == [("passed", "passed", "error")] * 2  # (not paid)
    assert stats["untrusted_tests"] == 3 / 9
