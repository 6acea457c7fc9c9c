# The two commands of README.md: `make demo` (the main job) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo lint test test-fast test-unit clean device-wheels device-rehearsal

setup:
	scripts/setup.sh

demo: setup
	$(PY) scripts/demo.py

# ruff: lint and format check (config in pyproject.toml); every test target runs it first.
lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: lint
	$(PY) -m pytest

# Tiers: tests/conftest.py and docs/testing.md.
test-fast: lint
	$(PY) -m pytest -m "unit or integration"

test-unit: lint
	$(PY) -m pytest -m unit

# The prepared GPU run (bench/device/README.md): the wheels it carries, and its rehearsal here on CPU.
device-wheels:
	bash bench/device/wheels.sh

device-rehearsal: device-wheels
	bash bench/device/rehearse.sh

clean:
	rm -rf build .pytest_cache
