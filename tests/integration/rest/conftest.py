"""Fixtures for the REST integration tests: a real local HTTP server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integration.rest.rest_local_server import LocalServer


@pytest.fixture
async def local_server() -> AsyncIterator[LocalServer]:
    server = LocalServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
