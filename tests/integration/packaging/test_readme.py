"""The README's Python blocks run as written against the embedded emulator.

Every ```` ```python ```` block of the README is preceded by a marker comment
that says how it is run, and a block without one fails this test:

- ``<!-- snippet: script -->``: the block is saved as a file and run with this
  Python in an empty directory, with the ``LOSANT_*`` variables of the README's
  Configuration table pointing at a fresh emulator (an application, an API
  token, an access key and a device with a ``temperature`` attribute). If the
  marker says ``command "stop"``, the test sends that command once the script's
  first state arrived (the block waits for it).
- ``<!-- snippet: pytest -->``: the block is saved as a test file and run by
  pytest in its default configuration (pytest-asyncio strict mode).
- ``<!-- snippet: skip, <why> -->``: not run.

``LOSANT_ASYNC_README`` names another README to check (the wheel check runs this
file outside the checkout).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from losant_async.testing import LocalLosant

README = Path(os.environ.get("LOSANT_ASYNC_README") or Path(__file__).resolve().parents[3] / "README.md")

_BLOCK = re.compile(r"(?:<!--\s*snippet:\s*(?P<marker>.*?)\s*-->\s*\n)?```python\n(?P<code>.*?)```", re.S)


@dataclass(frozen=True)
class Snippet:
    line: int
    kind: str
    marker: str
    code: str

    @property
    def id(self) -> str:
        return f"README.md:{self.line}:{self.kind}"


def _snippets() -> list[Snippet]:
    text = README.read_text(encoding="utf-8")
    found = []
    for match in _BLOCK.finditer(text):
        marker = match.group("marker") or ""
        kind = re.split(r"[\s,;]", marker, maxsplit=1)[0] if marker else ""
        line = text.count("\n", 0, match.start("code"))
        found.append(Snippet(line, kind, marker, match.group("code")))
    return found


SNIPPETS = _snippets()


def test_every_python_block_says_how_it_is_run() -> None:
    unmarked = [s.id for s in SNIPPETS if s.kind not in ("script", "pytest", "skip")]
    assert not unmarked, f"README blocks with no '<!-- snippet: script|pytest|skip -->' marker: {unmarked}"
    assert sum(s.kind == "script" for s in SNIPPETS) >= 3
    assert any(s.kind == "pytest" for s in SNIPPETS)


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOSANT_", "PYTEST_"))}
    env.update(extra, PYTHONUNBUFFERED="1")
    return env


async def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _send_stop_after_first_state(emulator: LocalLosant, device_id: str, before: int) -> None:
    await emulator.wait_for_states(device_id, before + 1, timeout=60)
    await emulator.send_command(device_id, "stop", {"why": "the README test"})


@pytest.mark.parametrize("snippet", [s for s in SNIPPETS if s.kind == "script"], ids=lambda s: s.id)
async def test_script_block_runs_against_the_emulator(
    snippet: Snippet, losant_emulator: LocalLosant, tmp_path: Path
) -> None:
    app = losant_emulator.create_application(name="readme")
    device = app.create_device(name="readme-sensor", attributes={"temperature": "number"})
    key = app.create_access_key()
    env = _child_env({
        "LOSANT_URL": losant_emulator.rest_url,
        "LOSANT_API_TOKEN": app.create_api_token(),
        "LOSANT_APPLICATION_ID": app.id,
        "LOSANT_DEVICE_ID": device.id,
        "LOSANT_ACCESS_KEY": key.key,
        "LOSANT_ACCESS_SECRET": key.secret,
        "LOSANT_MQTT_HOST": losant_emulator.mqtt_host,
        "LOSANT_MQTT_PORT": str(losant_emulator.mqtt_port),
        "LOSANT_MQTT_TRANSPORT": "tcp",
    })
    script = tmp_path / "snippet.py"
    script.write_text(snippet.code, encoding="utf-8")
    sends_stop = 'command "stop"' in snippet.marker
    helper = (
        asyncio.ensure_future(_send_stop_after_first_state(losant_emulator, device.id, 0)) if sends_stop else None
    )
    try:
        code, out, err = await _run([sys.executable, str(script)], tmp_path, env)
    finally:
        if helper is not None and not helper.done():
            helper.cancel()
        if helper is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await helper
    assert code == 0, f"{snippet.id} exited {code}\nstdout:\n{out}\nstderr:\n{err}"
    assert out.strip(), f"{snippet.id} printed nothing"
    if "LOSANT_DEVICE_ID" in snippet.code:
        # What the block reported reached the emulator as the configured device.
        states = losant_emulator.states(device.id)
        assert states, f"{snippet.id} stored no state for the configured device"
        assert all("temperature" in s.data for s in states)
    if sends_stop:
        assert "stop" in out


@pytest.mark.parametrize("snippet", [s for s in SNIPPETS if s.kind == "pytest"], ids=lambda s: s.id)
async def test_pytest_block_passes_in_default_strict_mode(snippet: Snippet, tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n", encoding="utf-8")
    (tmp_path / "test_snippet.py").write_text(snippet.code, encoding="utf-8")
    code, out, err = await _run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_snippet.py"], tmp_path, _child_env({})
    )
    assert code == 0, f"{snippet.id}: pytest exited {code}\n{out}\n{err}"
    assert re.search(r"\b[1-9]\d* passed\b", out), out
