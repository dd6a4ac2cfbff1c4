"""Fixtures for the console's tests: an emulator with a small world, and a real headless Chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

from losant_async.emulator import AccessKey, Application, Device, LocalLosant
from tests.integration.console.console_support import LAPTOP

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

CHROMIUM = os.environ.get("LOSANT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


def _unavailable(reason: str) -> None:
    # CI installs Chromium and Playwright: there a missing one is a failure, never a skip.
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests cannot run in CI: {reason}")
    pytest.skip(reason)


@dataclass
class World:
    losant: LocalLosant
    app: Application
    key: AccessKey
    sensor: Device
    other: Device


@pytest_asyncio.fixture
async def world(request: pytest.FixtureRequest) -> AsyncIterator[World]:
    throttle = bool(getattr(request, "param", False))
    async with LocalLosant(throttle=throttle) as losant:
        app = losant.create_application(name="greenhouse", description="the console's test world")
        attributes = {"temperature": "number", "humidity": "number", "door": "string"}
        sensor = app.create_device(name="sensor-01", attributes=attributes, tags={"floor": "1", "kind": "climate"})
        other = app.create_device(name="sensor-02", attributes=attributes, tags={"floor": "2", "kind": "climate"})
        app.create_device(name="pump", attributes={"flow": "number"}, tags={"floor": "1"})
        key = app.create_access_key()
        yield World(losant, app, key, sensor, other)


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    """A headless Chromium (Debian's, never a downloaded one)."""
    if shutil.which(CHROMIUM) is None:
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set LOSANT_CHROMIUM)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _unavailable("Playwright's Python package is not installed (pip install 'losant-async[test]')")
        raise
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest_asyncio.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh browser context (no cookie) and page at laptop size."""
    context = await browser.new_context(viewport=LAPTOP)
    try:
        tab = await context.new_page()
        yield tab
    finally:
        await context.close()
