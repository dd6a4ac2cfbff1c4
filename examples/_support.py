"""Helpers of the example tests: loading an example by path, running one as a script, a TCP proxy that can cut.

The examples are scripts, not a package, so tests load them from their file.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

EXAMPLES = Path(__file__).resolve().parent


def load_example(relative: str) -> ModuleType:
    """Import ``examples/<relative>`` as a module (registered, so dataclasses and pickling work)."""
    path = EXAMPLES / relative
    name = "examples_" + relative.removesuffix(".py").replace("/", "_")
    module = sys.modules.get(name)
    if module is not None:
        return module
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def script_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without any LOSANT_* variable (so a script embeds its emulator), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOSANT_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class ScriptResult:
    returncode: int
    stdout: str
    stderr: str


async def run_script(
    relative: str, *args: str, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 60
) -> ScriptResult:
    """Run ``python examples/<relative> args...`` to completion (killed after ``timeout`` s)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLES / relative), *args,
        cwd=cwd, env=script_env(env), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return ScriptResult(proc.returncode, out.decode(), err.decode())


class CuttableProxy:
    """A loopback TCP proxy in front of one port, with a switch that cuts the network.

    ``cut()`` aborts every open connection and stops listening, so new attempts
    are refused (as when a broker is down); ``await restore()`` listens again on
    the same port. Use it with ``async with``.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self.connections = 0
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> CuttableProxy:
        await self.restore()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def restore(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
            self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._writers.update((writer, up_writer))
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._tasks.discard(task)
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()
