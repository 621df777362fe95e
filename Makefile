# The two commands of the README: `make demo` (main job on the embedded default) and `make test`.
# Both build .venv from nothing on first use. torch==2.13.0 goes in first so that the project's
# torch range is already satisfied (a bare `torch` would pull a multi-GB CUDA build).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: demo dedup-study test test-all bench lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# The whole study on the embedded corpus (Python's standard library): a pilot, an LR check, a
# ladder up to 6.7e10 FLOPs, its fit, and the predicted optimum at 2e11 trained and scored
# (analysis/study/report.md; about 2 minutes on 2 cores).
demo: $(STAMP)
	$(BIN)/scaling study --target-flops 2e11 --verify

# "What does dedup buy?": one IsoFLOP ladder on the raw and on the deduplicated sitepackages
# corpus, a fit of each, one comparison (sweeps/dedup_study.yaml; ~11 minutes on
# 2 cores). Unhealthy fits are refused (at this size they are: README, "What does dedup buy?");
# make dedup-study COMPARE='--allow-unhealthy' compares them under a NOT OK banner.
STUDY   := dedup_study
COMPARE ?=
dedup-study: $(STAMP)
	$(BIN)/python -m scaling.sweep -m sweeps=$(STUDY)
	$(BIN)/scaling collect --experiment $(STUDY) --where 'data.process=[]' --out results/$(STUDY)_raw.csv
	$(BIN)/scaling collect --experiment $(STUDY) --where 'data.process=[dedup_exact,dedup_near]' --out results/$(STUDY)_dedup.csv
	$(BIN)/scaling fit results/$(STUDY)_raw.csv --out analysis/$(STUDY)/raw
	$(BIN)/scaling fit results/$(STUDY)_dedup.csv --out analysis/$(STUDY)/dedup
	$(BIN)/scaling compare analysis/$(STUDY)/raw analysis/$(STUDY)/dedup --labels raw,dedup --flops 2e12 --out analysis/$(STUDY) $(COMPARE)

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
