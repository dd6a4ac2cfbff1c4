"""Who may do what on the emulated REST API: device, application and user tokens, as Losant decides."""

from __future__ import annotations

import pytest

from losant_async.errors import ForbiddenError, NotFoundError, UnauthorizedError
from losant_async.rest import LosantClient
from losant_async.testing import LocalLosant

pytestmark = pytest.mark.timeout(120)


async def _device_token(losant: LocalLosant, device_id: str, key: str, secret: str) -> str:
    async with LosantClient(None, url=losant.rest_url, max_retries=0) as client:
        authed = await client.auth.authenticate_device(
            credentials={"deviceId": device_id, "key": key, "secret": secret}, raw=True
        )
    token: str = authed["token"]
    return token


async def test_a_device_token_reaches_its_own_device_only_and_an_unknown_device_is_404() -> None:
    async with LocalLosant() as losant:
        app = losant.create_application(name="a")
        mine = app.create_device(name="mine")
        other = app.create_device(name="other")
        key = app.create_access_key()
        token = await _device_token(losant, mine.id, key.key, key.secret)
        async with LosantClient(token, url=losant.rest_url, max_retries=0) as client:
            got = await client.device.get(application_id=app.id, device_id=mine.id, raw=True)
            assert got["id"] == mine.id
            with pytest.raises(ForbiddenError):
                await client.device.get(application_id=app.id, device_id=other.id)
            with pytest.raises(NotFoundError) as missing:
                await client.device.get(application_id=app.id, device_id="e" * 24)
            assert missing.value.type == "NotFound"
            listed = await client.devices.get(application_id=app.id, raw=True)
            assert [d["id"] for d in listed["items"]] == [mine.id]


async def test_missing_bad_and_revoked_tokens_are_401_and_a_missing_scope_is_403() -> None:
    async with LocalLosant() as losant:
        app = losant.create_application(name="a")
        device = app.create_device(name="d", attributes={"t": "number"})
        for token in (None, "not-a-token"):
            async with LosantClient(token, url=losant.rest_url, max_retries=0) as client:
                with pytest.raises(UnauthorizedError):
                    await client.device.get(application_id=app.id, device_id=device.id)
        reader = app.create_api_token(scopes=["all.Application.read"])
        async with LosantClient(reader, url=losant.rest_url, max_retries=0) as client:
            await client.device.get(application_id=app.id, device_id=device.id, raw=True)
            with pytest.raises(ForbiddenError):
                await client.device.send_state(application_id=app.id, device_id=device.id, device_state={"data": {"t": 1}})
        admin = app.create_api_token()
        async with LosantClient(admin, url=losant.rest_url, max_retries=0) as client:
            tokens = await client.application_api_tokens.get(application_id=app.id, raw=True)
            reader_id = next(t["id"] for t in tokens["items"] if t["scope"] == ["all.Application.read"])
            await client.application_api_token.patch(
                application_id=app.id, api_token_id=reader_id, api_token={"status": "inactive"}, raw=True
            )
        async with LosantClient(reader, url=losant.rest_url, max_retries=0) as client:
            with pytest.raises(UnauthorizedError):
                await client.device.get(application_id=app.id, device_id=device.id)


async def test_a_user_token_reaches_only_that_users_applications() -> None:
    async with LocalLosant() as losant:
        ada = losant.create_user("ada@example.com", "pw-a")
        bob = losant.create_user("bob@example.com", "pw-b")
        ada_app = losant.create_application(name="ada's", owner=ada)
        device = ada_app.create_device(name="d")
        async with LosantClient(losant.user_token(bob), url=losant.rest_url, max_retries=0) as client:
            listed = await client.applications.get(raw=True)
            assert listed["items"] == []
            with pytest.raises(ForbiddenError):
                await client.devices.get(application_id=ada_app.id)
            with pytest.raises(ForbiddenError):
                await client.device.get(application_id=ada_app.id, device_id=device.id)
            with pytest.raises(ForbiddenError):
                await client.devices.post(application_id=ada_app.id, device={"name": "intruder"})
            mine = await client.applications.post(application={"name": "bob's"}, raw=True)
        assert not any(d.name == "intruder" for d in losant.store.devices.values())
        async with LosantClient(losant.user_token(ada), url=losant.rest_url, max_retries=0) as client:
            listed = await client.applications.get(raw=True)
            assert [a["id"] for a in listed["items"]] == [ada_app.id]
            with pytest.raises(ForbiddenError):
                await client.application.get(application_id=mine["id"])
            created = await client.devices.post(application_id=ada_app.id, device={"name": "mine"}, raw=True)
            assert created["applicationId"] == ada_app.id


async def test_organization_members_reach_its_applications_and_others_do_not() -> None:
    async with LocalLosant() as losant:
        ada = losant.create_user("ada@example.com", "pw-a")
        bob = losant.create_user("bob@example.com", "pw-b")
        async with LosantClient(losant.user_token(ada), url=losant.rest_url, max_retries=0) as client:
            org = await client.orgs.post(organization={"name": "acme"}, raw=True)
            assert [m["userId"] for m in org["members"]] == [ada.id]
            app = await client.applications.post(application={"name": "shared", "orgId": org["id"]}, raw=True)
            assert app["ownerType"] == "organization"
        async with LosantClient(losant.user_token(bob), url=losant.rest_url, max_retries=0) as client:
            with pytest.raises(ForbiddenError):
                await client.application.get(application_id=app["id"])
            with pytest.raises(ForbiddenError):
                await client.org.get(org_id=org["id"])
            assert (await client.orgs.get(raw=True))["items"] == []
        async with LosantClient(losant.user_token(ada), url=losant.rest_url, max_retries=0) as client:
            org = await client.org.modify_member(org_id=org["id"], member={"userId": bob.id, "role": "edit"}, raw=True)
            assert {m["userId"]: m["role"] for m in org["members"]} == {ada.id: "admin", bob.id: "edit"}
        async with LosantClient(losant.user_token(bob), url=losant.rest_url, max_retries=0) as client:
            got = await client.application.get(application_id=app["id"], raw=True)
            assert got["id"] == app["id"]
