"""Execute the numbered notebooks in order (what `make run` does).

    python tools/run_notebooks.py --profile tiny [--only 03] [--smoke] [--out-dir DIR]

Each notebook runs top to bottom with papermill in notebooks/ as its working directory; by default
the executed notebook replaces the original, so its outputs (and the figures it writes into
figures/) are what GitHub shows. One progress line per notebook; the first failure stops the run
and names the notebook and the cell.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


def notebooks(only: str | None = None) -> list[Path]:
    found = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if only:
        found = [p for p in found if p.name.startswith(only)]
    return found


def run_one(path: Path, out: Path, parameters: dict) -> float:
    import papermill as pm

    t0 = time.time()
    pm.execute_notebook(
        str(path), str(out), parameters=parameters, kernel_name="python3",
        cwd=str(NOTEBOOKS), progress_bar=False, log_output=False,
    )
    strip_injected(out)
    relative_paths(out, ROOT)
    return time.time() - t0


def strip_injected(path: Path) -> None:
    """Drop papermill's "injected-parameters" cell: the notebook keeps its own parameters cell
    (PROFILE = None, auto), so opening it on Colab does not pin the profile this run used."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    nb["cells"] = [c for c in nb["cells"] if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def relative_paths(path: Path, root: Path) -> None:
    """Write the repo's absolute path in the outputs as seen from notebooks/ ("/…/repo/runs" -> "../runs"),
    so committed outputs name no machine's folders (WORK_DIR resolves to absolute paths at run time)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    prefix = str(root)

    def fix(text):
        return text.replace(prefix + "/", "../").replace(prefix, "..")

    meta = nb.get("metadata", {}).get("papermill", {})
    for key in ("input_path", "output_path"):
        if key in meta:
            meta[key] = f"notebooks/{Path(meta[key]).name}"
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            if "text" in out:
                out["text"] = [fix(t) for t in out["text"]] if isinstance(out["text"], list) else fix(out["text"])
            for kind, value in out.get("data", {}).items():
                if kind.startswith("text/"):
                    out["data"][kind] = [fix(t) for t in value] if isinstance(value, list) else fix(value)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="tiny", choices=["tiny", "colab", "paper"])
    ap.add_argument("--only", help="run only notebooks whose name starts with this prefix, e.g. 03")
    ap.add_argument("--smoke", action="store_true", help="small sizes (what the tests use)")
    ap.add_argument("--out-dir", type=Path, help="write executed copies here instead of in place")
    args = ap.parse_args(argv)

    paths = notebooks(args.only)
    if not paths:
        print(f"error: no notebook in {NOTEBOOKS} matches {args.only!r}", file=sys.stderr)
        return 2
    params = {"PROFILE": args.profile}
    if args.smoke:
        params["SMOKE"] = True
    total = time.time()
    for i, path in enumerate(paths, 1):
        out = (args.out_dir / path.name) if args.out_dir else path
        if args.out_dir:
            args.out_dir.mkdir(parents=True, exist_ok=True)
        print(f"[{i}/{len(paths)}] {path.name} ...", end=" ", flush=True)
        try:
            secs = run_one(path, out, params)
        except Exception as exc:  # papermill raises PapermillExecutionError with the cell
            print("FAILED")
            print(f"error: {path.name}: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}",
                  file=sys.stderr)
            return 1
        print(f"done in {secs:.0f} s", flush=True)
    print(f"all {len(paths)} notebooks ran in {time.time() - total:.0f} s; figures are in figures/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
