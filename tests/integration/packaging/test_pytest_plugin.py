"""The pytest fixtures as a user's suite gets them: pytest-asyncio strict mode, anyio's plugin, a missing extra.

Each case writes a small test file into a temporary directory with its own
``pytest.ini`` (so none of this project's settings apply) and runs pytest on it
in a subprocess, where the plugin loads through its entry point as it does for
a user.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

USES_THE_DEVICE = '''
from losant_async import Device


async def _report(losant_device):
    async with Device(losant_device.device_id, losant_device.key, losant_device.secret,
                      host=losant_device.mqtt_host, port=losant_device.mqtt_port,
                      transport="tcp") as device:
        await device.send_state({"temperature": 21.5})
    states = await losant_device.emulator.wait_for_states(losant_device.device_id, 1, timeout=30)
    assert states[0].data == {"temperature": 21.5}
    assert losant_device.emulator.composite_state(losant_device.device_id) == {"temperature": 21.5}


async def _empty(losant_emulator):
    app = losant_emulator.create_application(name="mine")
    device = app.create_device(name="d", attributes={"x": "number"})
    assert losant_emulator.states(device.id) == []
'''


def _run(tmp_path: Path, test_source: str, *args: str, ini: str = "", conftest: str = "") -> subprocess.CompletedProcess[str]:
    (tmp_path / "pytest.ini").write_text("[pytest]\n" + textwrap.dedent(ini), encoding="utf-8")
    (tmp_path / "test_user_suite.py").write_text(USES_THE_DEVICE + textwrap.dedent(test_source), encoding="utf-8")
    if conftest:
        (tmp_path / "conftest.py").write_text(textwrap.dedent(conftest), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "LOSANT_"))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error::pytest.PytestUnraisableExceptionWarning", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )


def _assert_outcome(result: subprocess.CompletedProcess[str], summary: str) -> None:
    output = result.stdout + result.stderr
    assert summary in output, output
    assert result.returncode == (0 if "failed" not in summary and "error" not in summary else 1), output


def test_in_pytest_asyncio_strict_mode(tmp_path: Path) -> None:
    result = _run(tmp_path, '''
        import pytest

        @pytest.mark.asyncio
        async def test_report(losant_device):
            await _report(losant_device)

        @pytest.mark.asyncio
        async def test_empty(losant_emulator):
            await _empty(losant_emulator)
    ''', ini="asyncio_default_fixture_loop_scope = function\n")
    _assert_outcome(result, "2 passed")


def test_under_the_anyio_plugin_without_pytest_asyncio(tmp_path: Path) -> None:
    result = _run(tmp_path, '''
        import pytest

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        @pytest.mark.anyio
        async def test_report(losant_device):
            await _report(losant_device)

        @pytest.mark.anyio
        async def test_empty(losant_emulator):
            await _empty(losant_emulator)
    ''', "-p", "no:asyncio")
    _assert_outcome(result, "2 passed")


def test_under_the_anyio_plugin_beside_pytest_asyncio_strict(tmp_path: Path) -> None:
    result = _run(tmp_path, '''
        import pytest

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        @pytest.mark.anyio
        async def test_report(losant_device):
            await _report(losant_device)

        @pytest.mark.asyncio
        async def test_empty(losant_emulator):
            await _empty(losant_emulator)
    ''', ini="asyncio_default_fixture_loop_scope = function\n")
    _assert_outcome(result, "2 passed")


def test_an_anyio_trio_backend_skips_naming_asyncio(tmp_path: Path) -> None:
    result = _run(tmp_path, '''
        import pytest

        @pytest.fixture
        def anyio_backend():
            return "trio"

        @pytest.mark.anyio
        async def test_empty(losant_emulator):
            await _empty(losant_emulator)
    ''', "-p", "no:asyncio", "-rs")
    _assert_outcome(result, "1 skipped")
    assert "asyncio only, not trio" in result.stdout


def test_without_the_emulator_extra_the_failure_names_it(tmp_path: Path) -> None:
    result = _run(tmp_path, '''
        import pytest

        @pytest.mark.asyncio
        async def test_empty(losant_emulator):
            await _empty(losant_emulator)
    ''', ini="asyncio_default_fixture_loop_scope = function\n", conftest='''
        import sys

        sys.modules["jsonschema"] = None  # as if the emulator extra were not installed
    ''')
    _assert_outcome(result, "1 error")
    assert (
        "the losant_emulator fixture needs the 'testing' extra (module 'jsonschema' is missing): "
        "pip install 'losant-async[testing]'"
    ) in result.stdout
    assert "Traceback" not in result.stdout


def test_in_pytest_asyncio_auto_mode(tmp_path: Path) -> None:
    result = _run(tmp_path, '''
        async def test_report(losant_device):
            await _report(losant_device)
    ''', ini="asyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    _assert_outcome(result, "1 passed")
