"""Losant's official REST clients, unmodified but for the base URL, against LocalLosant.

The Python client (``losant-rest`` from PyPI) runs in the benchmarks' virtualenv
(``benchmarks/_infra.official_env``: built once, cached); the JS client (``losant-rest`` from npm,
pinned in ``official_clients/package.json``, installed by ``make official-clients``) runs under
Node. Both run the same scenario (``official_clients/scenario.json``, 47 calls over devices,
states, commands, data, data tables, events, keys, tokens, recipes and files); the test checks
each client's results against what Losant documents and that the two clients saw the same thing.
Locally a missing Node or client is a skip that says why; under CI (``CI=true``) it is a failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest

from losant_async.testing import LocalLosant

pytestmark = pytest.mark.timeout(900)

# Runs inside the official venv: every check the issue names, each result printed as JSON.
_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from losant_rest import Client
    from losant_rest.losant_error import LosantError

    url, app_id, device_id, key, secret, api_token = sys.argv[1:7]
    out = {}

    def status_of(call):
        try:
            call()
        except LosantError as exc:
            return [exc.status, exc.data.get("type") if isinstance(exc.data, dict) else None]
        return [200, None]

    client = Client(url=url)
    authed = client.auth.authenticate_device(credentials={"deviceId": device_id, "key": key, "secret": secret})
    out["auth"] = {k: authed.get(k) for k in ("applicationId", "deviceId", "deviceClass")}
    client.auth_token = authed["token"]
    now = int(time.time() * 1000)
    out["send_state"] = client.device.send_state(
        applicationId=app_id, deviceId=device_id, deviceState={"data": {"temperature": 20.5}, "time": now - 1000})
    client.device.send_state(
        applicationId=app_id, deviceId=device_id, deviceState=[{"data": {"temperature": 21.5}, "time": now}])
    out["composite"] = client.device.get_composite_state(applicationId=app_id, deviceId=device_id)
    out["history"] = client.device.get_state(applicationId=app_id, deviceId=device_id, limit=2)
    lister = Client(api_token, url=url)
    devices = lister.devices.get(applicationId=app_id)
    out["devices"] = {"ids": [d["id"] for d in devices["items"]], "totalCount": devices["totalCount"]}
    out["bad_secret"] = status_of(lambda: Client(url=url).auth.authenticate_device(
        credentials={"deviceId": device_id, "key": key, "secret": "wrong"}))
    out["bad_token"] = status_of(lambda: Client("not-a-token", url=url).device.get(applicationId=app_id, deviceId=device_id))
    out["unknown_device"] = status_of(lambda: client.device.get(applicationId=app_id, deviceId="e" * 24))
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def official_python() -> str:
    try:
        from benchmarks._infra import official_env
    except ImportError as exc:  # the benchmarks are not part of an installed package
        _unavailable(f"benchmarks/_infra.py is not importable: {exc}")
        raise
    env = official_env(log=lambda *_: None)
    if env.python is None:
        _unavailable(env.skipped or "the official clients' virtualenv could not be built")
    assert env.python is not None
    return env.python


async def test_the_official_rest_client_runs_auth_state_history_list_and_error_checks(official_python: str) -> None:
    async with LocalLosant() as losant:
        app = losant.create_application(name="official")
        device = app.create_device(name="d1", attributes={"temperature": "number"})
        other = app.create_device(name="d2")
        key = app.create_access_key()
        process = await asyncio.create_subprocess_exec(
            official_python, "-c", _SCRIPT, losant.rest_url, app.id, device.id, key.key, key.secret,
            app.create_api_token(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, stderr.decode(errors="replace")[-2000:]
    out = json.loads(stdout)
    assert out["auth"] == {"applicationId": app.id, "deviceId": device.id, "deviceClass": "standalone"}
    assert out["send_state"] == {"success": True}
    assert out["composite"]["temperature"]["value"] == 21.5
    assert [s["data"]["temperature"] for s in out["history"]] == [21.5, 20.5]
    assert sorted(out["devices"]["ids"]) == sorted([device.id, other.id]) and out["devices"]["totalCount"] == 2
    assert out["bad_secret"] == [401, "Unauthorized"]
    assert out["bad_token"] == [401, "Unauthorized"]
    assert out["unknown_device"] == [404, "NotFound"]  # the issue: it used to be 403 Forbidden


# -- the shared scenario: both official clients ------------------------------------------------------

_CLIENTS = Path(__file__).parent / "official_clients"
_IN_CI = os.environ.get("CI", "").lower() == "true"


def _unavailable(reason: str) -> None:
    if _IN_CI:
        pytest.fail(f"CI runs the official clients' scenario: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def node_client() -> list[str]:
    node = shutil.which("node")
    if node is None:
        _unavailable("Node is not installed: the official JS client runs under Node (apt install nodejs npm)")
    if not (_CLIENTS / "node_modules" / "losant-rest").is_dir():
        _unavailable("the official JS client is not installed: run `make official-clients`")
    return [str(node), str(_CLIENTS / "run_scenario.js")]


async def _run_scenario(command: list[str]) -> dict[str, Any]:
    """The scenario against a fresh emulator: each client sees the same world from the start."""
    async with LocalLosant() as losant:
        app = losant.create_application(name="official")
        device = app.create_device(name="d1", attributes={"temperature": "number"})
        key = app.create_access_key()
        now = losant.store.clock()
        ctx = {
            "url": losant.rest_url, "appId": app.id, "deviceId": device.id, "key": key.key, "secret": key.secret,
            "apiToken": app.create_api_token(), "t0": now - 120_000, "t1": now - 60_000, "t2": now - 30_000, "t3": now,
        }
        process = await asyncio.create_subprocess_exec(
            *command, json.dumps(ctx), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), 180)
    assert process.returncode == 0, stderr.decode(errors="replace")[-2000:]
    results: dict[str, Any] = json.loads(stdout)
    results["_ctx"] = {"appId": app.id, "deviceId": device.id}
    return results


def _check_documented(r: dict[str, Any]) -> None:
    """What Losant documents for each step (the catalog's response schemas and descriptions)."""
    ok = {name: step.get("ok") for name, step in r.items() if isinstance(step, dict) and "ok" in step}
    app_id, device_id = r["_ctx"]["appId"], r["_ctx"]["deviceId"]
    assert ok["auth"]["deviceId"] == device_id and ok["auth"]["applicationId"] == app_id and ok["auth"]["token"]
    assert ok["state1"] == ok["state2"] == {"success": True}
    assert ok["composite"]["temperature"]["value"] == 21.5
    assert [s["data"]["temperature"] for s in ok["history"]] == [21.5, 20.5]  # newest first, limit 2
    assert ok["devices"]["totalCount"] == 1 and ok["devices"]["items"][0]["id"] == device_id
    assert ok["made"]["name"] == "made" and ok["made_get"]["id"] == ok["made"]["id"]
    assert ok["made_patch"]["description"] == "patched"
    # devices.get: query "overrides the filterField, filter, deviceClass, tagFilter, and parentId parameters"
    assert [d["name"] for d in ok["query_overrides"]["items"]] == ["made"]
    assert [d["name"] for d in ok["by_tag"]["items"]] == ["made"]
    assert ok["command_many"] == ok["command_one"] == {"success": True}
    assert [c["name"] for c in ok["commands"]] == ["blink", "reboot"]
    assert ok["made_delete"] == {"success": True} and r["made_gone"] == {"error": [404, "NotFound"]}
    points = ok["series"]["devices"][device_id]["points"]
    assert max(p["data"]["temperature"] for p in points) == 21.5
    assert ok["last_value"][device_id]["data"]["temperature"] == 21.5
    assert r["row_dup"] == {"error": [400, "Validation"]}  # the sku column is unique
    assert [row["sku"] for row in ok["rows_query"]["items"]] == ["a-1"]
    assert ok["row_patch"]["ok"] is True and [row["ok"] for row in ok["rows"]["items"]] == [True, True]
    assert ok["table_delete"] == {"success": True}
    assert [e["subject"] for e in ok["events_new"]["items"]] == ["boiler hot"]
    assert ok["event_ack"]["state"] == "acknowledged"
    # events.get: query "overrides the filterField, filter, and state parameters"
    assert [e["state"] for e in ok["events_query"]["items"]] == ["acknowledged"]
    assert ok["most_recent"]["newCount"] == 0
    assert ok["key"]["secret"] and ok["key_patch"]["status"] == "inactive"
    assert len(ok["keys"]["items"]) == 2  # the provisioned key and the scenario's
    assert ok["token"]["token"] and ok["token_delete"] == {"success": True}
    assert ok["bulk"]["created"] == 2 and ok["bulk"]["failed"] == 0
    recipe_devices = ok["recipe_devices"]["items"]
    assert sorted(d["name"] for d in recipe_devices) == ["thermo 1", "thermo 2"]
    assert all({"key": "site", "value": "north"} in d["tags"] for d in recipe_devices)
    assert ok["file_get"]["id"] == ok["file"]["id"] and ok["file_delete"] == {"success": True}
    assert [f["name"] for f in ok["files"]["items"]] == ["notes.txt"]
    assert r["bad_token"] == {"error": [401, "Unauthorized"]}
    assert r["bad_secret"] == {"error": [401, "Unauthorized"]}
    assert r["malformed_id"] == {"error": [400, "Validation"]}


_VOLATILE = re.compile(r"(?<![0-9a-f])(?:[0-9a-f]{24}|[0-9a-f]{36,})(?![0-9a-f])|\d{4}-\d\d-\d\dT[\d:.]+Z|eyJ[\w.-]+|127\.0\.0\.1:\d+")


def _normalised(results: dict[str, Any]) -> dict[str, Any]:
    """Ids, times, tokens and secrets differ between two runs; the rest must not."""
    out: dict[str, Any] = json.loads(_VOLATILE.sub("*", json.dumps({k: v for k, v in results.items() if k != "_ctx"})))
    return out


def _steps() -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = json.loads((_CLIENTS / "scenario.json").read_text(encoding="utf-8"))["steps"]
    assert len(steps) >= 30
    return steps


async def test_the_official_python_client_runs_the_scenario_with_documented_results(official_python: str) -> None:
    results = await _run_scenario([official_python, str(_CLIENTS / "run_scenario.py")])
    assert set(results) - {"_ctx"} == {s["name"] for s in _steps()}
    _check_documented(results)


async def test_the_official_js_client_runs_the_scenario_as_the_python_client_does(
    official_python: str, node_client: list[str]
) -> None:
    """The differential check: the JS client's results are the documented ones and, ids and times
    aside, the very results the Python client gets."""
    from_js = await _run_scenario(node_client)
    assert set(from_js) - {"_ctx"} == {s["name"] for s in _steps()}
    _check_documented(from_js)
    from_python = await _run_scenario([official_python, str(_CLIENTS / "run_scenario.py")])
    js, py = _normalised(from_js), _normalised(from_python)
    assert js == py, json.dumps({k: [js[k], py[k]] for k in js if js[k] != py.get(k)})[:3000]
