"""The console over plain HTTP (no browser): the door, the CSRF check, the streams' bounds, 10,000 devices, the CLI's link."""

# pyright: reportPrivateUsage=false
# (one test looks inside the emulator: its console's streams and its store's listeners)
from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import pytest_asyncio
from yarl import URL

from losant_async.emulator import LocalLosant
from losant_async.emulator.console import COOKIE
from losant_async.emulator.console._views import PAGE_SIZE, device_page
from tests.integration.cli._cli import cli_env
from tests.integration.console.conftest import World


@pytest_asyncio.fixture
async def session(world: World) -> AsyncIterator[aiohttp.ClientSession]:
    """A client that logged in with the console link (cookies of an IP host kept: unsafe=True)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        async with client.get(world.losant.console_url, allow_redirects=False) as response:
            assert response.status == 303 and response.headers["Location"] == "/console/"
        yield client


async def _csrf(session: aiohttp.ClientSession, world: World) -> str:
    async with session.get(f"{world.losant.rest_url}/console/devices/{world.sensor.id}") as response:
        text = await response.text()
    marker = 'name="csrf" value="'
    start = text.index(marker) + len(marker)
    return text[start:text.index('"', start)]


async def test_pages_carry_no_cors_and_forbid_framing(world: World, session: aiohttp.ClientSession) -> None:
    headers = {"Origin": "http://evil.example"}
    async with session.get(f"{world.losant.rest_url}/console/", headers=headers) as response:
        assert response.status == 200
        assert "Access-Control-Allow-Origin" not in response.headers
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["Referrer-Policy"] == "no-referrer"
    async with session.options(f"{world.losant.rest_url}/console/", headers={
        **headers, "Access-Control-Request-Method": "POST"}) as response:
        assert "Access-Control-Allow-Origin" not in response.headers


async def test_a_forged_cookie_is_refused(world: World) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        client.cookie_jar.update_cookies({COOKIE: "forged"}, response_url=URL(world.losant.rest_url))
        async with client.get(f"{world.losant.rest_url}/console/") as response:
            assert response.status == 401
            assert world.app.name not in await response.text()


async def test_the_command_form_needs_its_csrf_token(world: World, session: aiohttp.ClientSession) -> None:
    url = f"{world.losant.rest_url}/console/devices/{world.sensor.id}/command"
    async with session.post(url, data={"name": "reboot"}) as response:
        assert response.status == 403
    async with session.post(url, data={"name": "reboot", "csrf": "0" * 64}) as response:
        assert response.status == 403
    csrf = await _csrf(session, world)
    async with session.post(url, data={"name": "reboot", "csrf": csrf},
                            headers={"Origin": "http://127.0.0.1:1"}) as response:
        assert response.status == 403  # the right token, from another origin
    assert world.losant.commands_sent(world.sensor.id) == []
    async with session.post(url, data={"name": "reboot", "payload": '{"delay": 5}', "csrf": csrf}) as response:
        assert response.status == 200
    (command,) = world.losant.commands_sent(world.sensor.id)
    assert (command.name, command.payload) == ("reboot", {"delay": 5})


@pytest.mark.parametrize(("name", "payload", "problem"), [
    ("", "", "1 to 255 characters"),
    ("x" * 256, "", "1 to 255 characters"),
    ("ok", "[1,", "not JSON"),
    ("ok", '"' + "a" * 70_000 + '"', "over 64 KB"),
])
async def test_a_bad_command_is_refused_before_anything_is_sent(
    world: World, session: aiohttp.ClientSession, name: str, payload: str, problem: str
) -> None:
    csrf = await _csrf(session, world)
    url = f"{world.losant.rest_url}/console/devices/{world.sensor.id}/command"
    async with session.post(url, data={"name": name, "payload": payload, "csrf": csrf}) as response:
        assert response.status == 400
        assert problem in await response.text()
    assert world.losant.commands_sent(world.sensor.id) == []


async def _first_event(response: aiohttp.ClientResponse) -> dict[str, Any]:
    async for line in response.content:
        if line.startswith(b"data: "):
            found: dict[str, Any] = json.loads(line[6:])
            return found
    raise AssertionError("the stream ended")


async def test_the_device_stream_starts_with_history_then_sends_what_is_new(
    world: World, session: aiohttp.ClientSession
) -> None:
    store = world.losant.store
    device = store.devices[world.sensor.id]
    store.record_state(device, {"data": {"temperature": 20.5, "door": "open"}})
    url = f"{world.losant.rest_url}/console/live/device/{world.sensor.id}"
    async with session.get(url) as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        first = await asyncio.wait_for(_first_event(response), 5)
        assert first["init"] is True and first["attributes"] == ["humidity", "temperature"]
        assert [p[1:] for p in first["points"]] == [[None, 20.5]]
        store.record_state(device, {"data": {"humidity": 41}})
        await world.losant.send_command(world.sensor.id, "blink", {"n": 2})
        news: dict[str, Any] = {}
        while not {"new_points", "new_commands"} <= news.keys():  # in one update or two
            news.update(await asyncio.wait_for(_first_event(response), 5))
    # the last state sent comes again first (a state in the same millisecond merges into it)
    assert news["new_points"][-1][1] == 41 and news["new_points"][0][2] == 20.5
    (command,) = news["new_commands"]
    assert (command["name"], command["payload"]) == ("blink", {"n": 2})


async def test_live_streams_are_bounded(world: World, session: aiohttp.ClientSession) -> None:
    from losant_async.emulator.console._live import MAX_STREAMS

    url = f"{world.losant.rest_url}/console/live/fleet"
    opened = [await session.get(url) for _ in range(MAX_STREAMS)]
    try:
        for response in opened:
            assert response.status == 200
        async with session.get(url) as refused:
            assert refused.status == 503
    finally:
        for response in opened:
            response.close()


async def test_an_open_stream_ends_when_the_emulator_stops() -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        async with LocalLosant() as losant:
            await (await client.get(losant.console_url)).release()
            response = await client.get(f"{losant.rest_url}/console/live/fleet")
            first = await asyncio.wait_for(_first_event(response), 5)
            assert first["devices"] == 0
        # the stream's handler returned: its body ends (a read to the end does not wait for data)
        await asyncio.wait_for(response.content.read(), 5)
        assert response.content.at_eof()
        response.close()


async def test_a_page_of_ten_thousand_devices_is_fifty_rows_filtered_and_sorted() -> None:
    async with LocalLosant() as losant:
        app = losant.create_application("big")
        for i in range(10_000):
            app.create_device(f"dev-{9999 - i:05d}", tags={"rack": str(i % 10)})
        page = device_page(losant.store, app.id, page=3)
        assert (page.total, page.matched, page.pages, len(page.rows)) == (10_000, 10_000, 200, PAGE_SIZE)
        assert page.rows[0].name == "dev-00100"
        tagged = device_page(losant.store, app.id, tag="rack=3", name="DEV-09")
        assert tagged.matched == 100 and all(("rack", "3") in r.tags for r in tagged.rows)
        assert device_page(losant.store, app.id, page=999).page == 200  # past the end: the last page
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
            await (await client.get(losant.console_url)).release()
            async with client.get(f"{losant.rest_url}/console/applications/{app.id}?page=2&tag=rack") as response:
                text = await response.text()
        assert response.status == 200 and text.count("data-device-id=") == PAGE_SIZE
        assert "10000 of 10000 devices, page 2 of 200" in text


async def test_the_emulator_command_prints_a_console_link_that_logs_in() -> None:
    if sys.platform == "win32":
        pytest.skip("POSIX signals")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "losant_async.cli", "emulator",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=cli_env(),
    )
    try:
        assert proc.stdout is not None
        link = ""
        while not link:
            raw = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert raw, "the emulator exited early"
            if raw.strip().startswith(b"Console:"):
                link = raw.decode().split()[-1]
        assert urlsplit(link).hostname == "127.0.0.1" and "/console/login?token=" in link
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client, \
                client.get(link) as response:
            assert response.status == 200 and ">demo</a>" in await response.text()
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_simulate_console_keeps_the_embedded_emulator_open_after_the_run() -> None:
    if sys.platform == "win32":
        pytest.skip("POSIX signals")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "losant_async.cli", "simulate", "--devices", "3", "--duration", "1", "--quiet",
        "--command-interval", "0", "--console",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=cli_env(),
    )
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        while not seen or "stay open" not in seen[-1]:
            raw = await asyncio.wait_for(proc.stdout.readline(), 90)
            assert raw, "simulate exited early:\n" + "".join(seen)
            seen.append(raw.decode())
        link = next(line.split()[-1] for line in seen if line.startswith("Console:"))
        # the run is over and its summary printed; the emulator still answers, with the fleet in it
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
            async with client.get(link) as response:
                text = await response.text()
            assert response.status == 200 and "losant-async simulator" in text
            async with client.get(link.split("/console/")[0] + "/console/fleet") as response:
                assert 'id="fleet-states-total">' in await response.text()
        proc.send_signal(signal.SIGINT)
        out, _err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0
        summary = "".join(seen) + out.decode()
        assert summary.count("states sent") == 1  # the summary, once, before the wait
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_closed_page_leaves_nothing_running(world: World, session: aiohttp.ClientSession) -> None:
    """With no page open the console costs nothing: no stream, no store listener."""
    live = world.losant._console._live  # type: ignore[union-attr]
    store = world.losant.store
    listeners = (list(store._state_listeners), list(store._command_listeners), list(store._connection_listeners))
    for path in (f"/console/live/device/{world.sensor.id}", f"/console/live/devices?ids={world.sensor.id}",
                 "/console/live/fleet"):
        response = await session.get(world.losant.rest_url + path)
        await asyncio.wait_for(_first_event(response), 5)
        assert live.open_streams == 1
        response.close()  # the tab is closed: the connection goes away
        await asyncio.wait_for(live.idle.wait(), 5)  # the stream notices within a tick
    assert (store._state_listeners, store._command_listeners, store._connection_listeners) == listeners

