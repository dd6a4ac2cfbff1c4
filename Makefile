# Thin wrappers over the tools; see README.md. Every target installs the environment first if needed.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BOOT_PY := $(shell command -v python3 || command -v python)

.PHONY: install test lint generate check-generated check demo emulator bench examples-test docs test-lowest test-py310 test-py313 wheel-check verifytypes clean official-clients

$(STAMP): pyproject.toml
	test -x $(PY) || $(BOOT_PY) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,cli,bench,examples,ray,docs]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

lint: $(STAMP)
	$(PY) -m ruff check losant_async tests tools benchmarks examples docs/_hooks
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

# Losant's official JS REST client (pinned in its package.json) for the emulator's differential
# test; the official Python client comes from benchmarks/_infra.official_env when the test runs.
OFFICIAL_JS := tests/integration/emulator/official_clients
official-clients:
	npm ci --prefix $(OFFICIAL_JS) --no-audit --no-fund

examples-test: $(STAMP)
	$(PY) -m pytest -q examples

# The documentation site, strict: a broken link, reference or docstring fails the build
# (not --quiet: it hides the warnings strict mode counts).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict
	@echo "docs: built into site/"

# The unit tests against the lowest version of every dependency pyproject.toml declares
# (direct ones at their floor, what they pull in at its newest), in a venv of their own.
LOWEST := .venv-lowest
test-lowest: $(STAMP)
	rm -rf $(LOWEST)
	$(PY) -m uv venv --quiet --python $(PY) $(LOWEST)
	$(PY) -m uv pip install --quiet --python $(LOWEST)/bin/python --resolution lowest-direct -e ".[test]"
	$(PY) -m uv pip list --python $(LOWEST)/bin/python | grep -Ei '^(aiohttp|aiomqtt|msgspec|anyio|amqtt|pytest|pytest-asyncio) '
	$(LOWEST)/bin/python -m pytest -q tests/unit

# The unit and MQTT integration tests again on the oldest and the newest supported CPython
# (3.10 and 3.13; the image carries them under pyenv), each in a venv of its own: cancellation
# and timeouts behave differently across versions (asyncio.wait_for, TaskGroup, eager tasks).
PYENV_VERSIONS ?= /root/.pyenv/versions
python_for = $(firstword $(wildcard $(PYENV_VERSIONS)/$(1).*/bin/python$(1)) $(shell command -v python$(1)))
test-py310: PYV := 3.10
test-py313: PYV := 3.13
test-py310 test-py313: $(STAMP)
	@py="$(call python_for,$(PYV))"; test -n "$$py" || { echo "$@: no python$(PYV) found" >&2; exit 1; }; \
	venv=.venv-py$(PYV); test -x $$venv/bin/python || $(PY) -m uv venv --quiet --python $$py $$venv; \
	$(PY) -m uv pip install --quiet --python $$venv/bin/python -e ".[test]" \
	&& $$venv/bin/python -m pytest -q -p no:cacheprovider tests/unit tests/integration/mqtt

# The wheel as a user gets it: built, installed with the testing extra (the emulator, pytest,
# pytest-asyncio) in a fresh venv, and the README's code blocks run against it from outside
# the checkout, so nothing is imported from the source tree.
WHEEL_CHECK ?= build/wheel-check
wheel-check: $(STAMP)
	rm -rf $(WHEEL_CHECK) dist
	$(PY) -m build --wheel --outdir dist . > /dev/null
	$(BOOT_PY) -m venv $(WHEEL_CHECK)/venv
	$(WHEEL_CHECK)/venv/bin/python -m pip install --quiet "$$(ls dist/losant_async-*.whl)[testing]"
	mkdir -p $(WHEEL_CHECK)/run
	cp tests/integration/packaging/test_readme.py $(WHEEL_CHECK)/run/
	printf '[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n' > $(WHEEL_CHECK)/run/pytest.ini
	cd $(WHEEL_CHECK)/run && LOSANT_ASYNC_README=$(CURDIR)/README.md ../venv/bin/python -m pytest -q -p no:cacheprovider test_readme.py
	@# The core install alone: the emulator and the CLI name the extra they need, in one line.
	$(BOOT_PY) -m venv $(WHEEL_CHECK)/core
	$(WHEEL_CHECK)/core/bin/python -m pip install --quiet "$$(ls dist/losant_async-*.whl)"
	cd $(WHEEL_CHECK)/run && ../core/bin/python -c "from losant_async.testing import LocalLosant; LocalLosant()" 2>&1 \
	  | tail -n 1 | grep -Fx "losant_async.MissingExtraError: LocalLosant needs the 'emulator' extra (module 'jsonschema' is missing): pip install 'losant-async[emulator]'"
	cd $(WHEEL_CHECK)/run && out="$$(../core/bin/losant-async emulator 2>&1)"; rc=$$?; echo "$$out"; test $$rc -eq 1 \
	  && test "$$out" = "losant-async: error: LocalLosant needs the 'emulator' extra (module 'jsonschema' is missing): pip install 'losant-async[emulator]'"

# Type completeness of the public API as a user's checker sees it: pyright reads the installed wheel
# (an editable install hides the package from --verifytypes), with that venv's python first on PATH.
verifytypes: $(STAMP)
	test -x $(WHEEL_CHECK)/venv/bin/python || $(MAKE) wheel-check
	cd $(WHEEL_CHECK) && PATH="$(abspath $(WHEEL_CHECK))/venv/bin:$$PATH" VIRTUAL_ENV="$(abspath $(WHEEL_CHECK))/venv" \
	  $(CURDIR)/$(VENV)/bin/basedpyright --verifytypes losant_async --ignoreexternal > verifytypes.txt || true
	grep -E '^Symbols exported|^Type completeness' $(WHEEL_CHECK)/verifytypes.txt
	grep -q 'Type completeness score: 100%' $(WHEEL_CHECK)/verifytypes.txt

clean:
	rm -rf $(VENV) $(LOWEST) build dist site *.egg-info .mypy_cache .ruff_cache
