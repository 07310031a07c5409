"""Run every notebook's Colab branch on this CPU, outside the repo: a fake `google.colab`, the install
cell installing the repo from an "uploaded" copy, the automatic profile and the paths.

    python tools/colab_check.py [--only 03] [--keep]        (make colab-check)

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
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE = ('import json\nimport cocos_lib\nprint("COLAB-CHECK " + json.dumps({"cocos_lib": cocos_lib.__file__, '
         '"PROFILE": PROFILE, "WORK_DIR": str(WORK_DIR), "FIGURES_DIR": str(FIGURES_DIR), '
         '"RUN_DIR": str(globals().get("RUN_DIR"))}))')
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
    if got["WORK_DIR"] != str(work):
        problems.append(f"WORK_DIR {got['WORK_DIR']} is not {work}")
    for key in ("FIGURES_DIR", "RUN_DIR"):
        if got[key] != "None" and not (Path(got[key]).is_absolute() and got[key].startswith(str(work))):
            problems.append(f"{key} {got[key]} is not under {work}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="only notebooks whose name starts with this prefix, e.g. 03")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    args = ap.parse_args(argv)
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
            except Exception as e:  # a cell raised: papermill names it
                problems = [str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__]
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
