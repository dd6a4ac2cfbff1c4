"""Fixtures for the REST core's unit tests: a scripted aioresponses server and a sleep that never sleeps."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator

import pytest
from aioresponses import aioresponses

from losant_async.rest import LosantClient, RetryPolicy
from tests.unit.rest.rest_unit_helpers import BASE, Server, Sleeps


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    with aioresponses() as mocked:
        for method in ("GET", "POST", "PATCH", "DELETE", "PUT"):
            mocked.add(
                re.compile(r".*"),
                method,
                callback=lambda url, _m=method, **kw: srv._answer(_m, url, **kw),
                repeat=True,
            )
        yield srv


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def client(sleeps: Sleeps) -> AsyncIterator[LosantClient]:
    async with LosantClient(
        "tok-SECRET-123", url=BASE, sleep=sleeps, retry=RetryPolicy(rng=lambda: 0.5)
    ) as c:
        yield c
