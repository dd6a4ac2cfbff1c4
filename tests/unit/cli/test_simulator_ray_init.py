"""``simulate --ray``: the local Ray it starts keeps Ray's token authentication but not its WARNING on every run."""

from __future__ import annotations

import logging
import sys
import types
from typing import Any

import pytest

from losant_async.simulator import _ray

ENABLED = "Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled to opt out."
DISABLED = "Token authentication is disabled for this Ray cluster. Anyone with network access ..."


@pytest.fixture
def fake_ray(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """A stand-in ``ray`` whose ``init`` logs what Ray 2.5x logs for a new local cluster."""
    calls: list[dict[str, Any]] = []
    module = types.ModuleType("ray")

    def init(**kwargs: Any) -> None:
        calls.append(kwargs)
        log = logging.getLogger(_ray.TOKEN_AUTH_LOGGER)
        log.warning(ENABLED)
        log.warning(DISABLED)

    module.init = init  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ray", module)
    return calls


def test_the_local_ray_drops_only_the_token_auth_notice(
    fake_ray: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        _ray._init_ray(None, 2)
    messages = [r.getMessage() for r in caplog.records]
    assert ENABLED not in messages
    assert DISABLED in messages  # any other word from Ray still shows
    assert fake_ray[0]["_node_ip_address"] == "127.0.0.1"
    # The filter lives only as long as the start: a later notice shows again.
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        logging.getLogger(_ray.TOKEN_AUTH_LOGGER).warning(ENABLED)
    assert [r.getMessage() for r in caplog.records] == [ENABLED]


def test_a_cluster_s_notices_are_left_alone(fake_ray: list[dict[str, Any]], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        _ray._init_ray("ray://cluster:10001", 2)
    assert ENABLED in [r.getMessage() for r in caplog.records]
    assert fake_ray[0]["address"] == "ray://cluster:10001"
