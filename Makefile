# The two commands of the README: `make demo` (main job on the embedded default) and `make test`.
# Both build .venv from nothing on first use. torch==2.13.0 goes in first so that the project's
# torch range is already satisfied (a bare `torch` would pull a multi-GB CUDA build).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: demo test test-all bench lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m scaling.sweep -m sweeps=demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ''

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

lint: $(STAMP)
	$(BIN)/ruff check scaling tests benchmarks

clean:
	rm -rf $(VENV) results/*.db results/*.csv results/checkpoints analysis/*/
