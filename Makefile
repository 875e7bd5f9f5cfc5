# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.medseg-installed
OUT ?= outputs/demo
PYTEST_ARGS ?=

.PHONY: install demo test lint clean

# torch first, pinned: a local CPU build here; an open range would pull several GB of CUDA packages.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/medseg demo --out $(OUT)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check medseg tests benchmarks
	$(VENV)/bin/ruff format --check medseg tests benchmarks

clean:
	rm -rf outputs .pytest_cache
