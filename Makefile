# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.medseg-installed
OUT ?= outputs/demo
PYTEST_ARGS ?=
# The suite runs in this many processes (pytest-xdist): many tests wait on subprocess start-up and
# imports, so two workers on two cores finish in about 80% of the serial time.
TEST_WORKERS ?= 2

.PHONY: install demo test lint clean system-tools

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

# dcm2niix and dciodvfy are the independent references of the DICOM tests: installed where we
# can (root with apt-get, as in CI); without them those tests skip and say why.
system-tools:
	@if command -v dcm2niix >/dev/null && command -v dciodvfy >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && apt-get install -y -qq dcm2niix dicom3tools >/dev/null) \
		|| echo "warning: could not install dcm2niix/dicom3tools; their tests will skip"; \
	else echo "note: dcm2niix/dciodvfy not installed (apt-get install dcm2niix dicom3tools); their tests will skip"; fi

test: install system-tools
	$(PY) -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check medseg tests benchmarks
	$(VENV)/bin/ruff format --check medseg tests benchmarks

clean:
	rm -rf outputs .pytest_cache
