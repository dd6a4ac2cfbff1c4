"""Helpers of the console's browser tests: logging in, screenshots."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from losant_async.emulator import LocalLosant

if TYPE_CHECKING:
    from playwright.async_api import Page, ViewportSize

SHOTS = Path(__file__).resolve().parents[3] / "docs" / "console"
LAPTOP: ViewportSize = {"width": 1200, "height": 760}
PHONE: ViewportSize = {"width": 390, "height": 800}


async def login(page: Page, losant: LocalLosant) -> None:
    response = await page.goto(losant.console_url)
    assert response is not None and response.status == 200
    assert page.url == f"{losant.rest_url}/console/"


async def screenshot(page: Page, name: str, tmp_path: Path) -> Path:
    """A screenshot of the viewport; into docs/console/ when LOSANT_CONSOLE_SCREENSHOTS=1 (how the docs' are made)."""
    folder = SHOTS if os.environ.get("LOSANT_CONSOLE_SCREENSHOTS") == "1" else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    await page.screenshot(path=str(path), animations="disabled")
    assert path.stat().st_size > 1000
    return path
