# Two commands do all set-up on a fresh clone: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck clean-venv

$(BIN)/dmlbench: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	touch $(BIN)/dmlbench

# The main job: the four losses (3 seeds) and both baselines on the embedded `glyphs` dataset, on CPU, then the table
# (glyphs' default 3 epochs: about 300 CPU seconds, a few minutes on 2 cores; docs/training.md "The demo").
demo: $(BIN)/dmlbench
	$(BIN)/dmlbench bench --workers 2

lint: $(BIN)/dmlbench
	$(BIN)/ruff check dmlbench tests benchmarks
	$(BIN)/ruff format --check dmlbench tests benchmarks

typecheck: $(BIN)/dmlbench
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest

clean-venv:
	rm -rf $(VENV)
