# The two commands of README.md: `make demo` (the main job) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-fast test-unit clean

setup:
	scripts/setup.sh

demo: setup
	$(PY) scripts/demo.py

test: setup
	$(PY) -m pytest

# Tiers: tests/conftest.py and README.md (Tests).
test-fast: setup
	$(PY) -m pytest -m "unit or integration"

test-unit: setup
	$(PY) -m pytest -m unit

clean:
	rm -rf build .pytest_cache
