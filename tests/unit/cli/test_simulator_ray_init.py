"""``simulate --ray``: the local Ray it starts says its token-auth mode, so Ray prints no warning on every run."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from losant_async.simulator import _ray


@pytest.fixture
def fake_ray(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """A stand-in ``ray`` module recording each ``init`` and the RAY_AUTH_MODE it saw."""
    calls: list[dict[str, Any]] = []
    module = types.ModuleType("ray")

    def init(**kwargs: Any) -> None:
        import os

        calls.append({**kwargs, "auth_mode": os.environ.get("RAY_AUTH_MODE")})

    module.init = init  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ray", module)
    # setenv first: monkeypatch then restores the variable's absence, whatever _init_ray set.
    monkeypatch.setenv("RAY_AUTH_MODE", "placeholder")
    monkeypatch.delenv("RAY_AUTH_MODE")
    return calls


def test_the_local_ray_is_started_with_token_auth_said_explicitly(fake_ray: list[dict[str, Any]]) -> None:
    # Ray 2.5x warns "Token authentication is enabled ... Set RAY_AUTH_MODE=disabled to opt out"
    # when the mode is unset; set, it keeps quiet. "token" is what Ray would choose anyway.
    _ray._init_ray(None, 2)
    assert fake_ray[0]["auth_mode"] == "token"
    assert fake_ray[0]["_node_ip_address"] == "127.0.0.1"


def test_a_users_own_mode_wins(fake_ray: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    _ray._init_ray(None, 2)
    assert fake_ray[0]["auth_mode"] == "disabled"


def test_a_cluster_keeps_its_own_mode(fake_ray: list[dict[str, Any]]) -> None:
    _ray._init_ray("ray://cluster:10001", 2)
    assert fake_ray[0]["auth_mode"] is None
    assert fake_ray[0]["address"] == "ray://cluster:10001"
