# Thin wrappers over the tools; see README.md.
PY ?= .venv/bin/python
VENV_PY := $(shell command -v python3 || command -v python)

.PHONY: install test lint generate check-generated check demo bench examples-test clean

install:
	test -x $(PY) || $(VENV_PY) -m venv .venv
	$(PY) -m pip install --upgrade pip >/dev/null
	$(PY) -m pip install -e ".[dev,cli,bench,examples]"

test:
	$(PY) -m pytest -q tests

lint:
	$(PY) -m ruff check losant_async tests tools benchmarks examples
	$(PY) -m mypy

generate:
	$(PY) -m tools.codegen

check-generated:
	$(PY) -m pytest -q tests/unit/test_generated_up_to_date.py

check: lint check-generated test

demo:
	$(PY) -m losant_async.cli simulate --devices 200 --rate 1 --duration 20

bench:
	$(PY) -m benchmarks

examples-test:
	$(PY) -m pytest -q examples

clean:
	rm -rf .venv build dist *.egg-info .mypy_cache .ruff_cache
