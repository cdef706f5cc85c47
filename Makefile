# pidbook: `make book` builds the whole book on the embedded default, `make test` runs the tests.
# Both create the virtual environment (.venv/) on first use and install the pinned stack.

PYTHON ?= python3
PROFILE ?= cpu
MODEL ?= all
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Small dense linear algebra gains nothing from BLAS threads, and multi-threaded OpenBLAS stalls
# on busy 2-core machines; torch keeps its own intra-op threads.
export OPENBLAS_NUM_THREADS ?= 1

.PHONY: help book check-book test test-fast bench bench-gpu models lint clean-book clean-cache

help:
	@echo "make book [PROFILE=cpu|smoke|llava|...]  execute every chapter and build the HTML book"
	@echo "make check-book                           the smoke book in headless Chromium (after make book PROFILE=smoke)"
	@echo "make test                                 run the test suite (unit + slow tier)"
	@echo "make bench                                estimator, flow, extraction and knockout benchmarks"
	@echo "make models [MODEL=all|committed|NAME]    retrain embedded models (all: 2 decoders + 10 models, ~2.5 h)"
	@echo "make lint                                 ruff and the architecture contracts (import-linter)"

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

book: $(STAMP)
	$(BIN)/python scripts/build_book.py --profile $(PROFILE)

# Every page of the smoke book in headless Chromium, offline; screenshots and a report go to
# _build/smoke/_build/screenshots/.
check-book: $(STAMP)
	$(BIN)/python -m pytest -m browser tests/test_browser.py

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

bench-gpu: $(STAMP)
	$(BIN)/python benchmarks/run_all.py --gpu

models: $(STAMP)
	$(BIN)/python -m pidlib.training --model $(MODEL)

lint: $(STAMP)
	$(BIN)/ruff check pidlib tests benchmarks scripts notebooks
	$(BIN)/lint-imports
	$(BIN)/ruff format --check pidlib tests benchmarks scripts notebooks

clean-book:
	rm -rf _build build

clean-cache:
	rm -rf _cache
