"""Losant's official ``losant-rest`` Python client, unmodified, in its own virtualenv, against LocalLosant.

The virtualenv is the benchmarks' (``benchmarks/_infra.official_env``: built once, cached); the
test skips, saying why, when it cannot be built (no network to PyPI, no venv module...).
"""

from __future__ import annotations

import asyncio
import json
import textwrap

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
        pytest.skip(f"benchmarks/_infra.py is not importable: {exc}")
    env = official_env(log=lambda *_: None)
    if env.python is None:
        pytest.skip(env.skipped or "the official clients' virtualenv could not be built")
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
