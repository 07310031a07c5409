"""Run every notebook's Colab branch on this CPU, outside the repo: a fake `google.colab`, the install
cell installing the repo from an "uploaded" copy, the automatic profile and the paths.

    python tools/colab_check.py [--only 03] [--keep] [--versions current,oldest,newest]   (make colab-check)

Versions: "current" is this environment. "oldest" and "newest" each build an overlay venv in the temporary
folder (this environment's packages underneath, torch held at this environment's version by a pip constraint)
with the oldest transformers/peft pyproject.toml declares (its floors, exactly) or the newest on the index,
run the version-sensitive tests there (VERSION_TESTS, not slow),
then this check again inside it. Needs the package index for those two (about 1 min each).

Per notebook, in a temporary folder that stands in for Colab's /content:
  content/cocos-main/    a copy of this working tree (tracked and untracked, not ignored files), as if
                         the repo's zip had been uploaded and unzipped there
  content/NN_name.ipynb  the notebook up to its setup cell, plus a probe cell that prints what it found
  site-NN/               where the install cell's pip installs (PIP_TARGET; PIP_NO_INDEX, PIP_NO_DEPS and no
                         build isolation keep it offline and leave the shared environment untouched)
  fake/google/colab/     an empty `google.colab`, imported at kernel start by an IPython startup file
The kernel's PYTHONPATH is site-NN/ and fake/ only, so `import cocos_lib` after the install cell proves
the install. One more run puts a notebook inside the copy (content/cocos-main/notebooks/): the install
cell must then find the copy above it, and WORK_DIR must be the copy's root.
Checks: no cell errors; the install cell names the copy, without build warnings; cocos_lib comes from
site-NN/; PROFILE is "tiny" with the Colab hint (no GPU here); WORK_DIR, FIGURES_DIR and RUN_DIR are
absolute and under the folder. The real notebooks are left unchanged and the temporary folder is removed (--keep keeps it).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import site
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE = ('import json\nfrom importlib import metadata\nimport cocos_lib\nprint("COLAB-CHECK " + json.dumps({'
         '"cocos_lib": cocos_lib.__file__, "PROFILE": PROFILE, "WORK_DIR": str(WORK_DIR), '
         '"FIGURES_DIR": str(FIGURES_DIR), "RUN_DIR": str(globals().get("RUN_DIR")), '
         '"versions": {m: metadata.version(m) for m in ("transformers", "peft")}}))')
WATCHED = ("transformers", "peft")
VERSION_TESTS = ("tests/test_fastgen.py", "tests/test_models.py", "tests/test_versions.py", "tests/test_vllm_backend.py",
                 "tests/test_static_caches.py")
HINT = "Runtime > Change runtime type > T4 GPU"


def copy_tree(dst: Path) -> None:
    """The working tree's files (what a zip of the repo holds), without ignored build outputs."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard", "-z"],
                            check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


def truncated(notebook: Path, out: Path) -> Path:
    """The notebook up to its setup cell (the first code cell after the parameters cell), then the probe."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    cells = nb["cells"]
    p = next(i for i, c in enumerate(cells) if "parameters" in c["metadata"].get("tags", []))
    s = next(i for i in range(p + 1, len(cells)) if cells[i]["cell_type"] == "code")
    probe = {"cell_type": "code", "execution_count": None, "id": "colabchk", "metadata": {}, "outputs": [],
             "source": PROBE}
    nb["cells"] = cells[:s + 1] + [probe]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(nb, indent=1, ensure_ascii=False), encoding="utf-8")
    return out


def fake_colab(tmp: Path) -> dict:
    """The fake google.colab and the IPython startup file that imports it, as environment variables."""
    (tmp / "fake" / "google" / "colab").mkdir(parents=True)
    (tmp / "fake" / "google" / "colab" / "__init__.py").write_text('"""Stand-in for Colab (tools/colab_check.py)."""\n')
    startup = tmp / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-colab.py").write_text("import google.colab  # noqa: F401  (as Colab's kernel has it)\n")
    return {"IPYTHONDIR": str(tmp / "ipython")}


def kernel_env(tmp: Path, site: Path, base: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHONPATH"))}
    env.update(base, PYTHONPATH=os.pathsep.join([str(site), str(tmp / "fake")]), PIP_TARGET=str(site),
               PIP_NO_INDEX="1", PIP_NO_DEPS="1", PIP_NO_BUILD_ISOLATION="0", PIP_DISABLE_PIP_VERSION_CHECK="1",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               MPLBACKEND="Agg")
    return env


def execute(nb: Path, cwd: Path, env: dict) -> list[str]:
    """Run `nb` with papermill in `cwd` under `env` (SMOKE=True); return every text output, in order."""
    import nbformat
    import papermill as pm
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        pm.execute_notebook(str(nb), str(nb), parameters={"SMOKE": True}, kernel_name="python3", cwd=str(cwd),
                            progress_bar=False, log_output=False)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    outs = [o for c in nbformat.read(nb, as_version=4).cells if c.cell_type == "code" for o in c.get("outputs", [])]
    return [o.get("text", "") for o in outs if o.get("output_type") == "stream"]


def installed_versions() -> dict[str, str]:
    """transformers and peft as this interpreter has them (the kernel must see the same)."""
    return {m: metadata.version(m) for m in WATCHED}


def check(texts: list[str], site: Path, source: Path, work: Path) -> list[str]:
    """What is wrong with one run (empty: all good)."""
    text = "".join(texts)
    lines = [ln for ln in text.splitlines() if ln.startswith("COLAB-CHECK ")]
    if not lines:
        return ["no probe output"]
    got = json.loads(lines[-1][len("COLAB-CHECK "):])
    problems = []
    if f"cocos_lib installed from {source}" not in text:
        problems.append(f"the install cell did not install {source}")
    if not got["cocos_lib"].startswith(str(site)):
        problems.append(f"cocos_lib imported from {got['cocos_lib']}, not from the installed copy in {site}")
    if "Warning" in text.split("cocos_lib installed from")[0]:
        problems.append("the install cell printed build warnings")
    if got["PROFILE"] != "tiny" or HINT not in text:
        problems.append(f"PROFILE {got['PROFILE']!r} without the Colab runtime hint")
    if got["versions"] != installed_versions():
        problems.append(f"the kernel ran {got['versions']}, not this interpreter's {installed_versions()}")
    if got["WORK_DIR"] != str(work):
        problems.append(f"WORK_DIR {got['WORK_DIR']} is not {work}")
    for key in ("FIGURES_DIR", "RUN_DIR"):
        if got[key] != "None" and not (Path(got[key]).is_absolute() and got[key].startswith(str(work))):
            problems.append(f"{key} {got[key]} is not under {work}")
    return problems


def version_pins(which: str) -> list[str]:
    """pip arguments for the overlay `which`: "oldest" = the floors of transformers and peft in pyproject.toml,
    exactly (e.g. transformers==4.56.0); "newest" = the latest the index has."""
    if which == "newest":
        return ["--upgrade", *WATCHED]
    deps = re.search(r"dependencies = \[(.*?)\]", (ROOT / "pyproject.toml").read_text(), re.S).group(1)
    floors = dict(re.findall(r'"([A-Za-z0-9_-]+)>=([0-9.]+)"', deps))
    return [f"{m}=={floors[m]}" + ".0" * (2 - floors[m].count(".")) for m in WATCHED]


def overlay_venv(folder: Path, which: str) -> Path:
    """A venv in `folder` that sees this environment's packages under its own (a .pth at the end of its
    site-packages) and holds transformers/peft of `which`; torch stays this environment's (a pip constraint).
    datasets is asked for too, so that pip picks one that works with the huggingface_hub it installs."""
    # no pip or setuptools of its own: this environment's (setuptools >= 77 builds the repo) install into it
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    own = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"], check=True,
                         capture_output=True, text=True).stdout.strip()
    Path(own, "zz-base-environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    constraints = folder / "constraints.txt"
    constraints.write_text(f"torch=={metadata.version('torch')}\n")
    wanted = [*version_pins(which), "datasets>=2.18"]
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-c", str(constraints)]
    subprocess.run([*pip, *wanted], check=True, stderr=subprocess.DEVNULL)
    # packages underneath that the pinned versions broke (e.g. one needing a newer huggingface_hub): let pip pick
    # versions of them that fit, in the overlay, as a resolver on a fresh machine would
    report = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True).stdout
    broken = sorted({line.split()[0] for line in report.splitlines() if " requires " in line or " has requirement " in line})
    if broken:
        subprocess.run([*pip, *wanted, *broken], check=True, stderr=subprocess.DEVNULL)
    return python


def run_versions(which: str, tmp: Path, only: str | None) -> bool:
    """The version-sensitive tests and this check, under an overlay venv of `which`; True when both pass."""
    python = overlay_venv(tmp / f"venv-{which}", which)
    got = subprocess.run([str(python), "-c", "from importlib import metadata; print(', '.join(f'{m} ' + "
                          f"metadata.version(m) for m in {WATCHED!r}))"], capture_output=True, text=True).stdout.strip()
    print(f"[{which}] {got}", flush=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    tests = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
                            *VERSION_TESTS], cwd=ROOT, env=dict(env, PYTHONPATH=str(ROOT)),
                           capture_output=True, text=True)
    summary = (tests.stdout.strip().splitlines() or ["no output"])[-1]
    print(f"[{which}] tests ({', '.join(VERSION_TESTS)}): {summary}", flush=True)
    if tests.returncode:
        print(tests.stdout[-3000:] + tests.stderr[-2000:])
    nb = subprocess.run([str(python), str(ROOT / "tools" / "colab_check.py"), "--versions", "current",
                         *(["--only", only] if only else [])], cwd=ROOT, env=env, capture_output=True, text=True)
    for line in nb.stdout.splitlines():
        print(f"[{which}] {line}")
    return tests.returncode == 0 and nb.returncode == 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="only notebooks whose name starts with this prefix, e.g. 03")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    ap.add_argument("--versions", default="current,oldest,newest",
                    help="comma list of current (this environment), oldest / newest (declared transformers/peft)")
    args = ap.parse_args(argv)
    versions = args.versions.split(",")
    if versions != ["current"]:
        tmp = Path(tempfile.mkdtemp(prefix="cocos-colab-versions-"))
        try:
            results = {v: main(["--versions", "current", *(["--only", args.only] if args.only else [])]) == 0
                       if v == "current" else run_versions(v, tmp, args.only) for v in versions}
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print("colab-check versions: " + ", ".join(f"{v} {'ok' if ok else 'FAILED'}" for v, ok in results.items()))
        return 0 if all(results.values()) else 1
    found = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    notebooks = [p for p in found if p.name.startswith(args.only or "")]
    before = {p: p.read_bytes() for p in notebooks}
    tmp = Path(tempfile.mkdtemp(prefix="cocos-colab-check-"))
    failures = 0
    try:
        content = tmp / "content"
        copy = content / "cocos-main"
        copy_tree(copy)
        base = fake_colab(tmp)
        runs = [(nb, content / nb.name, content, content) for nb in notebooks]
        runs += [(notebooks[0], copy / "notebooks" / f"check-{notebooks[0].name}", copy / "notebooks", copy)]
        for i, (nb, target, cwd, work) in enumerate(runs, 1):
            site = tmp / f"site-{i}"
            site.mkdir()
            t0 = time.time()
            try:
                problems = check(execute(truncated(nb, target), cwd, kernel_env(tmp, site, base)), site, copy, work)
            except Exception as e:  # a cell raised: papermill's error names it (ename: evalue)
                text = f"{e.ename}: {e.evalue}" if hasattr(e, "ename") else str(e).strip() or type(e).__name__
                problems = [text.splitlines()[0]]
            where = target.relative_to(tmp)
            print(f"[{i}/{len(runs)}] {where}: {'ok' if not problems else 'FAILED'} ({time.time() - t0:.0f} s)")
            for p in problems:
                print(f"    {p}")
            failures += bool(problems)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if any(p.read_bytes() != data for p, data in before.items()):
        print("error: a notebook in notebooks/ changed")
        return 1
    print(f"colab-check: {len(runs) - failures}/{len(runs)} runs passed; temporary folder {tmp} "
          f"{'kept' if args.keep else 'removed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
