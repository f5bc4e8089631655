# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv if missing and installs torch==2.13.0 first (the CPU build), then mger.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mger-installed
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install demo demo-corpora demo-full demo-layers test clean-data

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev,opensmile]'
	$(BIN)/python -m pip install -q --no-deps silero-vad==6.2.3  # mger predict: its VAD model (JIT); --no-deps: no torchaudio
	touch $@

demo: $(STAMP)
	@start=$$(date +%s); \
	$(BIN)/dvc repro && $(BIN)/mger summary && \
	echo "make demo: the pipeline took $$(( $$(date +%s) - start )) s (installation not counted)"

# Independent of `make demo`: every other corpus layout end to end on a small synthetic corpus
# (msp_podcast, meld, crema_d, ravdess, csv: synth --layout → prepare → align → extract → train →
# report, params/corpora/<corpus>.yaml) and one cross-corpus run (CREMA-D → RAVDESS); one results
# table per corpus, the cross-corpus table, the total time.  Folders data/corpora, reports/corpora.
demo-corpora: $(STAMP)
	MGER=$(BIN)/mger tools/demo_corpora.sh

# After `make demo`: every row of params/demo-full.yaml (the demo's plus those left out for its
# time budget) trained on the demo's cached features; reports/full/results.md.
demo-full: $(STAMP)
	$(BIN)/dvc repro train
	$(BIN)/mger train --params params/demo-full.yaml --experiment all
	$(BIN)/mger report --params params/demo-full.yaml

# After `make demo`: a store of every layer of the demo model and a row that learns a weighted sum of
# them (params/demo-layers.yaml, beside the demo's last-layer rows); reports/layers/results.md.
demo-layers: $(STAMP)
	$(BIN)/dvc repro extract
	$(BIN)/mger extract --params params/demo-layers.yaml --kind layers
	for row in probe_speech audio_word probe_layers audio_word_layers; do \
	  $(BIN)/mger train --params params/demo-layers.yaml --experiment $$row || exit 1; done
	$(BIN)/mger report --params params/demo-layers.yaml

# Lint first (ruff: F, E, W, I, and the format check; import-linter: the layers of docs/architecture.md), then the tests.
test: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .
	$(BIN)/python tools/lint_imports.py
	$(BIN)/python -m pytest

clean-data:
	rm -rf data reports dvc.lock .dvc/cache .dvc/tmp  # the run cache too: the next demo recomputes every stage
