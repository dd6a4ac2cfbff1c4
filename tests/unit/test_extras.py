"""A missing optional dependency fails with one line that names the extra to install."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

from losant_async import LosantError, MissingExtraError
from losant_async._extras import extra_for_module, import_extra, require_extra

HIDE_AMQTT = "import sys; sys.modules['jsonschema'] = None\n"  # as if the emulator extra were not installed


def test_the_error_is_an_import_error_naming_extra_and_module() -> None:
    exc = MissingExtraError("emulator", "jsonschema", "LocalLosant")
    assert isinstance(exc, ModuleNotFoundError) and isinstance(exc, ImportError)
    assert isinstance(exc, LosantError)
    assert (exc.extra, exc.name, exc.feature) == ("emulator", "jsonschema", "LocalLosant")
    assert str(exc) == (
        "LocalLosant needs the 'emulator' extra (module 'jsonschema' is missing): pip install 'losant-async[emulator]'"
    )
    assert str(MissingExtraError("cli", "rich")) == "module 'rich' is missing: pip install 'losant-async[cli]'"
    again = pickle.loads(pickle.dumps(exc))
    assert (type(again), str(again), again.extra) == (MissingExtraError, str(exc), "emulator")


def test_extra_for_module_looks_up_the_top_level_name() -> None:
    assert extra_for_module("jsonschema.validators") == "emulator"
    assert extra_for_module("rich") == "cli"
    assert extra_for_module("pytest_asyncio") == "testing"
    assert extra_for_module("json") is None


def test_require_extra_passes_for_installed_and_raises_for_missing() -> None:
    require_extra("emulator", "json", "asyncio")
    with pytest.raises(MissingExtraError, match=r"pip install 'losant-async\[docs\]'") as info:
        require_extra("docs", "json", "losant_no_such_module_xyz", feature="the docs")
    assert info.value.name == "losant_no_such_module_xyz"


def test_import_extra_maps_a_missing_module_to_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    assert import_extra("json").__name__ == "json"
    for name in ("rich", "rich.console"):  # hidden even if another test imported them
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingExtraError) as info:
        import_extra("rich.console", feature="live progress")
    assert info.value.extra == "cli"
    assert str(info.value).startswith("live progress needs the 'cli' extra (module 'rich' is missing)")
    with pytest.raises(ModuleNotFoundError) as plain:
        import_extra("losant_no_such_module_xyz")
    assert not isinstance(plain.value, MissingExtraError)


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", HIDE_AMQTT + code], capture_output=True, text=True, timeout=120)


def test_local_losant_without_the_emulator_extra() -> None:
    result = _python(
        "from losant_async.testing import LocalLosant\n"
        "try:\n"
        "    LocalLosant()\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "MissingExtraError LocalLosant needs the 'emulator' extra (module 'jsonschema' is missing): "
        "pip install 'losant-async[emulator]'"
    )


def test_the_cli_emulator_without_the_emulator_extra_prints_one_line() -> None:
    result = _python("import sys\nfrom losant_async.cli import main\nsys.exit(main(['emulator']))\n")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip() == (
        "losant-async: error: LocalLosant needs the 'emulator' extra (module 'jsonschema' is missing): "
        "pip install 'losant-async[emulator]'"
    )
