# The two commands a newcomer needs: `make run` and `make test`. Each does its own set-up.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# This machine (and CI) take the CPU build of torch 2.13.0; override for a CUDA box, e.g.
#   make TORCH_SPEC='torch==2.13.0' run    (or install your own torch into .venv first)
TORCH_SPEC ?= torch==2.13.0
STAMP   = $(VENV)/.installed

.PHONY: setup run test colab-check warmstart bench clean help

help:
	@echo "make run   - set up .venv, execute notebooks/00..05 in the tiny profile, write figures/"
	@echo "make test  - set up .venv, run the whole test suite (notebooks included)"
	@echo "make colab-check - run every notebook's Colab branch (install cell, auto profile, paths) on this CPU"
	@echo "make warmstart - rebuild the shipped tiny warm-start checkpoint (deterministic)"
	@echo "make bench - executor and rollout benchmarks (CPU)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -q --disable-pip-version-check "$(TORCH_SPEC)"
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/python tools/run_notebooks.py --profile tiny

test: setup
	$(BIN)/python -m pytest -q

colab-check: setup
	$(BIN)/python tools/colab_check.py

warmstart: setup
	$(BIN)/python -m cocos_lib.toy build-warmstart

bench: setup
	$(BIN)/python benchmarks/executor_bench.py
	$(BIN)/python benchmarks/rollout_bench.py

clean:
	rm -rf $(VENV) .pytest_cache runs
