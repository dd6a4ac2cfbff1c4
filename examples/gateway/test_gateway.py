"""The gateway example as a real process: outages, restarts and signals, against the emulator."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from examples._support import EXAMPLES, CuttableProxy, script_env

Event = dict[str, Any]
TIMEOUT = 15.0


class GatewayProcess:
    """``python examples/gateway/gateway.py`` as a subprocess, its JSON log lines collected as they come."""

    def __init__(self, env: dict[str, str], *args: str, cwd: Path) -> None:
        self.env = env
        self.args = args
        self.cwd = cwd
        self.events: list[Event] = []
        self.stderr = b""
        self._changed = asyncio.Condition()
        self._proc: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> GatewayProcess:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, str(EXAMPLES / "gateway" / "gateway.py"), *self.args,
            cwd=self.cwd, env=script_env(self.env),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        self._readers = [asyncio.ensure_future(self._read_stdout()), asyncio.ensure_future(self._read_stderr())]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._proc is not None
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            await self._proc.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)

    async def _read_stdout(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        async for line in self._proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "unparsed", "line": line.decode(errors="replace")}
            async with self._changed:
                self.events.append(event)
                self._changed.notify_all()
        async with self._changed:
            self.events.append({"event": "eof"})
            self._changed.notify_all()

    async def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        self.stderr = await self._proc.stderr.read()

    async def wait_for(self, predicate: Callable[[list[Event]], bool], what: str) -> None:
        """Wait until ``predicate(events)`` holds."""
        async def check() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: predicate(self.events) or self._ended())
        try:
            await asyncio.wait_for(check(), TIMEOUT)
        except asyncio.TimeoutError:
            raise AssertionError(f"timed out waiting for {what}; stderr: {self.stderr[-2000:]!r}") from None
        assert predicate(self.events), f"the gateway ended before {what}: {self.events[-5:]} {self.stderr[-2000:]!r}"

    def _ended(self) -> bool:
        return bool(self.events) and self.events[-1]["event"] == "eof"

    def count(self, kind: str, **match: Any) -> int:
        return sum(1 for e in self.events if e["event"] == kind and all(e.get(k) == v for k, v in match.items()))

    def readings(self, after: int = 0) -> list[Event]:
        return [e for e in self.events[after:] if e["event"] == "reading"]

    async def stop(self, signum: int) -> int:
        """Send ``signum`` and return the exit status."""
        assert self._proc is not None
        self._proc.send_signal(signum)
        return await self.exited()

    async def exited(self) -> int:
        """The exit status, once the process has ended by itself."""
        assert self._proc is not None
        try:
            return await asyncio.wait_for(self._proc.wait(), TIMEOUT)
        finally:
            await asyncio.gather(*self._readers, return_exceptions=True)


class Site:
    """A gateway with three peripherals on the emulator, reached through a proxy that can cut."""

    def __init__(self, losant: Any, proxy: CuttableProxy, tmp_path: Path) -> None:
        self.losant = losant
        app = losant.create_application(name="gateway test")
        self.gateway = app.create_device(name="gw", device_class="gateway")
        attributes = {"temperature": "number", "humidity": "number"}
        self.peripherals = [
            app.create_device(name=f"p{i}", device_class="peripheral", parent_id=self.gateway.id, attributes=attributes).id
            for i in range(3)
        ]
        key = app.create_access_key()
        self.env = {
            "LOSANT_DEVICE_ID": self.gateway.id,
            "LOSANT_PERIPHERAL_IDS": ",".join(self.peripherals),
            "LOSANT_ACCESS_KEY": key.key,
            "LOSANT_ACCESS_SECRET": key.secret,
            "LOSANT_MQTT_HOST": "127.0.0.1",
            "LOSANT_MQTT_PORT": str(proxy.port),
            "LOSANT_MQTT_TRANSPORT": "tcp",
        }
        self.outbox = tmp_path / "outbox.sqlite3"
        self.cwd = tmp_path

    def process(self, drain_timeout: float = 5.0) -> GatewayProcess:
        return GatewayProcess(
            self.env, "--interval", "0.05", "--outbox", str(self.outbox), "--reconnect-cap", "0.3",
            "--drain-timeout", str(drain_timeout), cwd=self.cwd,
        )

    def stored(self, reading: Event) -> bool:
        return any(s.time == reading["time"] for s in self.losant.states(reading["peripheral"]))

    async def wait_stored(self, readings: list[Event]) -> None:
        """Wait until every reading is stored, then check each one's original time and values."""
        missing = {(r["peripheral"], r["time"]) for r in readings}
        all_there = asyncio.Event()

        def on_state(record: Any) -> None:
            missing.discard((record.device_id, record.time))
            if not missing:
                all_there.set()

        unsubscribe = self.losant.store.on_state(on_state)
        try:
            for peripheral in self.peripherals:
                for s in self.losant.states(peripheral):
                    missing.discard((peripheral, s.time))
            if missing:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(all_there.wait(), TIMEOUT)
        finally:
            unsubscribe()
        assert not missing, f"{len(missing)} readings lost, e.g. {sorted(missing)[:3]}"
        for r in readings:
            by_time = {s.time: s.data for s in self.losant.states(r["peripheral"])}
            assert by_time[r["time"]] == pytest.approx(r["data"]), r


@pytest.fixture
async def site(losant_emulator: Any, tmp_path: Path) -> Any:
    async with CuttableProxy(losant_emulator.mqtt_host, losant_emulator.mqtt_port) as proxy:
        yield Site(losant_emulator, proxy, tmp_path), proxy


def connected(n: int) -> Callable[[list[Event]], bool]:
    return lambda events: sum(1 for e in events if e.get("state") == "connected") >= n


def disconnected(events: list[Event]) -> bool:
    return any(e["event"] == "connection" and e["state"] in ("disconnected", "reconnecting") for e in events)


async def test_a_cut_connection_loses_no_reading_and_commands_reach_their_peripheral(site: Any) -> None:
    site, proxy = site
    async with site.process() as gw:
        await gw.wait_for(connected(1), "the first connection")
        await site.losant.wait_for_states(site.peripherals[0], 3, timeout=TIMEOUT)

        proxy.cut()
        await gw.wait_for(disconnected, "the disconnect")
        mark = len(gw.events)
        await gw.wait_for(lambda _: len(gw.readings(mark)) >= 9, "readings while offline")
        offline = gw.readings(mark)
        assert not any(site.stored(r) for r in offline), "nothing can arrive while the network is cut"

        await proxy.restore()
        await gw.wait_for(connected(2), "the reconnection")
        await site.wait_stored(offline)

        target = site.peripherals[2]
        await site.losant.send_command(target, "calibrate", {"offset": 100})
        await gw.wait_for(lambda _: gw.count("command") >= 1, "the command")
        mark = len(gw.events)
        await gw.wait_for(
            lambda _: sum(r["peripheral"] == target for r in gw.readings(mark)) >= 3, "calibrated readings"
        )

        assert await gw.stop(signal.SIGTERM) == 0, gw.stderr.decode()

    [command] = [e for e in gw.events if e["event"] == "command"]
    assert command["peripheral"] == target and command["name"] == "calibrate" and command["applied"]
    after = gw.readings(mark)
    # The first one may have been read just before the command arrived.
    assert all(r["data"]["temperature"] > 100 for r in [r for r in after if r["peripheral"] == target][1:])
    assert all(r["data"]["temperature"] < 100 for r in after if r["peripheral"] != target)
    assert gw.events[-2]["event"] == "stopped" and gw.events[-2]["pending"] == 0
    await site.wait_stored(gw.readings())


async def test_a_restart_with_the_same_outbox_delivers_what_the_outage_kept(site: Any) -> None:
    site, proxy = site
    async with site.process(drain_timeout=0.5) as first:
        await first.wait_for(connected(1), "the first connection")
        proxy.cut()
        await first.wait_for(disconnected, "the disconnect")
        mark = len(first.events)
        await first.wait_for(lambda _: len(first.readings(mark)) >= 6, "readings while offline")
        assert await first.stop(signal.SIGTERM) == 0, first.stderr.decode()
    stopped = [e for e in first.events if e["event"] == "stopped"]
    assert stopped and stopped[0]["pending"] >= 6, "the offline readings stay in the outbox file"
    kept = first.readings(mark)
    assert not any(site.stored(r) for r in kept)

    await proxy.restore()
    async with site.process() as second:
        await second.wait_for(lambda e: any(x["event"] == "started" for x in e), "the restart")
        started = next(e for e in second.events if e["event"] == "started")
        assert started["pending"] >= len(kept)
        await site.wait_stored(first.readings())
        assert await second.stop(signal.SIGINT) == 0, second.stderr.decode()
    await site.wait_stored(first.readings() + second.readings())


async def test_the_demo_runs_standalone_on_an_embedded_emulator(tmp_path: Path) -> None:
    async with GatewayProcess({}, "--duration", "2.5", "--interval", "0.2", cwd=tmp_path) as demo:
        await demo.wait_for(lambda e: any(x["event"] == "eof" for x in e), "the end of the demo")
    stored = [e for e in demo.events if e["event"] == "stored"]
    assert len(stored) == 3 and all(e["states"] > 0 for e in stored), demo.stderr.decode()
    assert demo.count("command", name="calibrate", applied=True) == 1
    assert not await asyncio.to_thread(lambda: list(tmp_path.iterdir())), "the demo leaves no outbox behind"


async def test_refused_credentials_end_the_process_with_an_error(site: Any) -> None:
    site, _proxy = site
    site.env["LOSANT_ACCESS_SECRET"] = "wrong-secret-value"
    async with site.process() as gw:
        assert await gw.exited() == 1
    [error] = [e for e in gw.events if e["event"] == "error"]
    assert error["type"] == "AuthenticationRefusedError"
    output = json.dumps(gw.events) + gw.stderr.decode()
    assert "wrong-secret-value" not in output
