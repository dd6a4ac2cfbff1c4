# Thin wrappers over the tools; see README.md. Every target installs the environment first if needed.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BOOT_PY := $(shell command -v python3 || command -v python)

.PHONY: install test lint generate check-generated check demo emulator bench examples-test clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(BOOT_PY) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,cli,bench,examples,ray]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

lint: $(STAMP)
	$(PY) -m ruff check losant_async tests tools benchmarks examples
	$(PY) -m mypy && $(VENV)/bin/basedpyright

generate: $(STAMP)
	$(PY) -m tools.codegen

check-generated: $(STAMP)
	$(PY) -m pytest -q tests/unit/codegen/test_generated_up_to_date.py

check: lint check-generated test examples-test

demo: $(STAMP)
	$(PY) -m losant_async.cli simulate --devices 200 --rate 1 --duration 20

emulator: $(STAMP)
	$(PY) -m losant_async.cli emulator

bench: $(STAMP)
	$(PY) -m benchmarks

examples-test: $(STAMP)
	$(PY) -m pytest -q examples

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache
