# Two commands for a fresh machine: `make demo` and `make test`.
# Both create .venv and install the project into it first.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch/torchvision first, pinned, so no other dependency pulls a different build.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
# Test files spread over up to four processes (pytest-xdist), a file's tests in one of them, so
# a module's fixtures are built once; most tests start training processes with one thread each.
# The twenty slowest tests are listed at the end, to see where the suite spends its time.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)
SPREAD := -n $(TEST_WORKERS) --dist loadfile
PYTEST_ARGS ?= -m "not slow" $(SPREAD) --durations=20

.PHONY: setup demo lint test test-all bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

setup: $(VENV)/.installed

# The 9-cell grid (SGD/SAM/GSAM x constant/batch/cosine) on scikit-learn's digits, two seeds,
# trained by one worker process per core (the preset picks the pool launcher and the seeds, so
# `launch.py -m experiment=demo` alone does the same), then the tables and the claims.
demo: setup
	$(PY) launch.py -m experiment=demo
	$(PY) -m analysis $${SAM_RESULTS_ROOT:-results}/demo

# ruff, as configured in pyproject.toml (CI runs it before the tests).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest $(SPREAD)

clean:
	rm -rf $(VENV) results outputs multirun .pytest_cache
