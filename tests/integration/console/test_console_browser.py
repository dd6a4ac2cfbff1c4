"""The console in a real headless Chromium: login, refusals, live status, live chart, the command form, bans."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web

from losant_async.mqtt import Device
from tests.integration.console.conftest import World
from tests.integration.console.console_support import PHONE, login, screenshot

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

WAIT_MS = 10_000


def device_client(world: World, device_id: str, **kwargs: Any) -> Device:
    return Device(device_id, world.key.key, world.key.secret, host=world.losant.mqtt_host,
                  port=world.losant.mqtt_port, transport="tcp", **kwargs)


async def test_the_login_link_opens_the_console_with_a_strict_httponly_cookie(world: World, page: Page,
                                                                               tmp_path: Path) -> None:
    from playwright.async_api import expect

    await login(page, world.losant)
    await expect(page.locator("#applications")).to_contain_text("greenhouse")
    await expect(page.locator("#applications")).to_contain_text("3")
    (cookie,) = await page.context.cookies()
    assert (cookie.get("httpOnly"), cookie.get("sameSite"), cookie.get("path")) == (True, "Strict", "/console")
    # the token never stays in the address bar (it was a redirect) nor in a page
    assert "token" not in page.url
    assert world.losant.console_url.split("token=")[1] not in await page.content()
    await screenshot(page, "applications", tmp_path)
    # the counts follow the fleet (the table refreshes every 5 s)
    connected = page.locator("#applications tbody tr").first.locator("td").nth(2)
    await expect(connected).to_have_text("0")
    async with device_client(world, world.sensor.id):
        await expect(connected).to_have_text("1", timeout=WAIT_MS)


async def test_without_the_token_every_page_is_refused(world: World, page: Page) -> None:
    base = world.losant.rest_url
    for path in ("/console/", f"/console/applications/{world.app.id}", f"/console/devices/{world.sensor.id}",
                 "/console/fleet", "/console/events", "/console/live/fleet", "/console/static/console.js"):
        response = await page.goto(base + path)
        assert response is not None and response.status == 401, path
        assert world.app.name not in await page.content()
    response = await page.goto(f"{base}/console/login?token=not-the-token")
    assert response is not None and response.status == 403
    assert await page.context.cookies() == []


async def test_another_origin_reads_nothing_and_its_form_is_refused(world: World, page: Page) -> None:
    """A page on another port (another origin, the same site) of the same browser, after the login."""
    await login(page, world.losant)
    target = f"{world.losant.rest_url}/console/devices/{world.sensor.id}/command"
    evil = web.Application()

    async def index(_request: web.Request) -> web.Response:
        return web.Response(content_type="text/html", text=(
            f'<form id="f" method="post" action="{target}"><input name="name" value="pwned">'
            '<input name="csrf" value="guess"></form>'))

    evil.router.add_get("/", index)
    runner = web.AppRunner(evil)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        await page.goto(f"http://127.0.0.1:{port}/")
        # no CORS header: the browser hides the answer from the other origin's script
        outcome = await page.evaluate(
            "url => fetch(url, {credentials: 'include'}).then(r => 'read ' + r.status, () => 'blocked')",
            f"{world.losant.rest_url}/console/",
        )
        assert outcome == "blocked"
        async with page.expect_navigation():
            await page.evaluate("document.getElementById('f').submit()")
        assert "refused" in await page.content()
    finally:
        await runner.cleanup()
    assert world.losant.commands_sent(world.sensor.id) == []


async def test_a_device_that_connects_turns_connected_without_a_reload(world: World, page: Page,
                                                                         tmp_path: Path) -> None:
    from playwright.async_api import expect

    await login(page, world.losant)
    await page.goto(f"{world.losant.rest_url}/console/applications/{world.app.id}")
    row = page.locator(f'tr[data-device-id="{world.sensor.id}"] .status')
    await expect(row).to_have_text("never connected")
    await page.evaluate("window.notReloaded = true")
    async with device_client(world, world.sensor.id) as device:
        await expect(row).to_contain_text("connected", timeout=WAIT_MS)
        await expect(row).not_to_contain_text("never", timeout=WAIT_MS)
        await expect(row).to_contain_text("since")
        await device.send_state({"temperature": 21.5})
        last = page.locator(f'tr[data-device-id="{world.sensor.id}"] .last-state time')
        await expect(last).to_have_count(1, timeout=WAIT_MS)
        await screenshot(page, "devices", tmp_path)
    await expect(row).to_contain_text("disconnected", timeout=WAIT_MS)
    assert await page.evaluate("window.notReloaded") is True


async def test_the_device_list_filters_by_name_and_tag(world: World, page: Page) -> None:
    from playwright.async_api import expect

    await login(page, world.losant)
    await page.goto(f"{world.losant.rest_url}/console/applications/{world.app.id}")
    rows = page.locator("#devices tbody tr[data-device-id]")
    await expect(rows).to_have_count(3)
    await page.fill("input[name=tag]", "floor=1")
    await expect(rows).to_have_count(2, timeout=WAIT_MS)
    await page.fill("input[name=name]", "SENSOR")
    await expect(rows).to_have_count(1, timeout=WAIT_MS)
    await expect(rows).to_contain_text("sensor-01")
    assert "tag=floor%3D1" in page.url or "tag=floor=1" in page.url


async def test_the_chart_gains_points_as_states_arrive(world: World, page: Page, tmp_path: Path) -> None:
    from playwright.async_api import expect

    await login(page, world.losant)
    await page.goto(f"{world.losant.rest_url}/console/devices/{world.sensor.id}")
    chart = page.locator("#chart")
    await expect(chart.locator("canvas")).to_have_count(1, timeout=WAIT_MS)
    await expect(chart).to_have_attribute("data-points", "0")
    async with device_client(world, world.sensor.id) as device:
        for i in range(6):
            await device.send_state({"temperature": 20 + i * 0.5, "humidity": 40 + i}, time=_ms_ago(6 - i))
        await world.losant.wait_for_states(world.sensor.id, 6)
        await expect(chart).to_have_attribute("data-points", "6", timeout=WAIT_MS)
        await device.send_state({"temperature": 24.5, "humidity": 47})
        await expect(chart).to_have_attribute("data-points", "7", timeout=WAIT_MS)
        await expect(page.locator("#states tbody tr")).to_have_count(7)
        await expect(page.locator("#states tbody tr").first).to_contain_text('"temperature":24.5')
        await screenshot(page, "device", tmp_path)


async def test_a_command_from_the_form_reaches_the_device(world: World, page: Page, tmp_path: Path) -> None:
    from playwright.async_api import expect

    await login(page, world.losant)
    await page.goto(f"{world.losant.rest_url}/console/devices/{world.sensor.id}")
    async with device_client(world, world.sensor.id) as device:
        commands = device.commands()
        await page.fill("#command-form input[name=name]", "setLed")
        await page.fill("#command-form textarea[name=payload]", '{"on": true, "level": 3}')
        await page.click("#command-form button")
        command = await asyncio.wait_for(commands.__anext__(), 10)
        assert (command.name, command.payload) == ("setLed", {"on": True, "level": 3})
        await expect(page.locator("#command-result")).to_contain_text("Sent 'setLed'")
        await expect(page.locator("#commands tbody tr").first).to_contain_text("setLed", timeout=WAIT_MS)
        await screenshot(page, "command", tmp_path)
        # a payload that is not JSON is refused on the page, and nothing is sent
        await page.fill("#command-form textarea[name=payload]", "{not json")
        await page.click("#command-form button")
        await expect(page.locator("#command-result .error")).to_contain_text(
            "The payload is not JSON: JSON is malformed", timeout=WAIT_MS)
    assert [c.name for c in world.losant.commands_sent(world.sensor.id)] == ["setLed"]


@pytest.mark.parametrize("world", [True], indirect=True, ids=["throttled"])
async def test_a_ban_shows_in_the_connection_log_with_its_reason(world: World, page: Page, tmp_path: Path) -> None:
    from playwright.async_api import expect

    await login(page, world.losant)
    await page.goto(f"{world.losant.rest_url}/console/devices/{world.other.id}")
    log = page.locator("#connection-log tbody")
    async with device_client(world, world.other.id, throttle=False) as device:
        await expect(log.locator("tr.on")).to_have_count(1, timeout=WAIT_MS)
        # Losant's limit is 30 messages per 15 s on one topic: the 31st closes the connection and bans
        for i in range(31):
            await device.send_state({"humidity": i})
        await expect(log.locator("tr.off")).to_have_count(1, timeout=WAIT_MS)
        await expect(log.locator("tr.off").first).to_contain_text("throttle ban")
        await expect(log.locator("tr.off").first).to_contain_text("throttled")
        await expect(page.locator("#device-ban")).to_be_visible()
        await expect(page.locator("#device-status")).to_contain_text("disconnected")
        await screenshot(page, "ban", tmp_path)
        await device.aclose(flush=False)
    assert world.losant.counters.mqtt_throttled == 1


async def test_the_fleet_overview_is_live(world: World, page: Page, tmp_path: Path) -> None:
    from playwright.async_api import expect

    await login(page, world.losant)
    await page.goto(f"{world.losant.rest_url}/console/fleet")
    await expect(page.locator("#fleet-connected")).to_have_text("0")
    async with device_client(world, world.sensor.id) as one, device_client(world, world.other.id) as two:
        await expect(page.locator("#fleet-connected")).to_have_text("2", timeout=WAIT_MS)
        for i in range(5):
            await one.send_state({"temperature": 20 + i})
            await two.send_state({"temperature": 25 - i})
        await world.losant.wait_for_states(world.other.id, 5)
        await expect(page.locator("#fleet-states-total")).to_have_text("10", timeout=WAIT_MS)
        await expect(page.locator("#fleet-chart canvas")).to_have_count(1, timeout=WAIT_MS)
        await screenshot(page, "fleet", tmp_path)


async def test_the_events_page_lists_the_applications_events(world: World, page: Page, tmp_path: Path) -> None:
    from playwright.async_api import expect

    world.losant.add_object("events", {"subject": "Door open", "level": "warning", "state": "new", "message": "north door",
                                       "deviceId": world.sensor.id, "deviceName": "sensor-01"},
                            applicationId=world.app.id)
    world.losant.add_object("events", {"subject": "<b>not markup</b>", "level": "info"}, applicationId=world.app.id)
    await login(page, world.losant)
    await page.goto(f"{world.losant.rest_url}/console/events")
    rows = page.locator("#events tbody tr")
    await expect(rows).to_have_count(2)
    await expect(page.locator("#events")).to_contain_text("Door open")
    await expect(page.locator("#events")).to_contain_text("<b>not markup</b>")  # shown as text, not run as markup
    await page.select_option("select[name=level]", "warning")
    await expect(rows).to_have_count(1, timeout=WAIT_MS)
    await screenshot(page, "events", tmp_path)


async def test_the_device_page_fits_a_phone(world: World, browser: Browser, tmp_path: Path) -> None:
    async with device_client(world, world.sensor.id) as device:
        for i in range(8):
            await device.send_state({"temperature": 19 + (i % 3), "humidity": 50 - i}, time=_ms_ago(8 - i))
    await world.losant.wait_for_states(world.sensor.id, 8)
    context = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        page = await context.new_page()
        await login(page, world.losant)
        await page.goto(f"{world.losant.rest_url}/console/devices/{world.sensor.id}")
        await page.locator('#chart[data-points="8"]').wait_for(timeout=WAIT_MS)
        # nothing wider than the screen: wide tables scroll inside their own box
        overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0
        await screenshot(page, "device-phone", tmp_path)
    finally:
        await context.close()


def _ms_ago(seconds: int) -> int:
    from losant_async._time import now_ms

    return now_ms() - seconds * 1000
