# Two commands do everything on a fresh machine:
#   make run    create .venv if missing, install, run the main job on embedded defaults (prescale demo)
#   make test   create .venv if missing, install, then ruff + import-linter contracts + pytest
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run serve test lint bench clean help

help:
	@echo "make run | make test | make serve | make lint | make bench | make clean"

# torch first: `torch==2.13.0` is a CPU build that pip finds on this machine's disk; letting
# darts pull torch itself would download a multi-GB CUDA build.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/prescale demo

# the Prefect and MLflow UIs, the every-minute loop deciding on the bundled traces played as live demand
serve: $(STAMP)
	$(BIN)/prescale serve --live

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/allocation.py

clean:
	rm -rf .prescale .pytest_cache
