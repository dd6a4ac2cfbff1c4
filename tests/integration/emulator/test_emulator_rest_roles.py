"""Issue 21, item 3: instance, organization and application membership roles decide what a user token may do.

Roles from the catalog's schemas (``instanceMember.role``: admin, view; ``orgMemberPatch.role``:
admin, edit, collaborate, view, none; ``applicationRoles`` per application) and
docs.losant.com/organizations/overview ("If you have Editor permissions or higher within an
organization ... you can select that organization as the owner of any new application";
"If you have Administrator permissions ... administrative options are available") and
docs.losant.com/instance-manager/managing-organizations (the creating instance member becomes the
new organization's administrator). The table is in docs/emulator.md."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from losant_async.testing import LocalLosant

pytestmark = pytest.mark.timeout(120)


@dataclass
class World:
    losant: LocalLosant
    session: aiohttp.ClientSession
    tokens: dict[str, str]
    ids: dict[str, str]

    async def call(self, who: str, method: str, path: str, body: Any = None) -> int:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        async with self.session.request(method, self.losant.rest_url + path, json=body, headers=headers) as response:
            await response.read()
            return response.status


@pytest_asyncio.fixture
async def world() -> AsyncIterator[World]:
    async with LocalLosant() as losant:
        tokens, ids = {}, {}
        for name in ("owner", "admin", "edit", "collaborate", "view", "none", "stranger", "iadmin", "iview"):
            user = losant.create_user(f"{name}@example.com", "Role!Passw0rd#1")
            ids[name] = user.id
            tokens[name] = losant.store.add_token(application_id=None, scopes=["all.User"], kind="user", user_id=user.id).token
        members = [{"userId": ids[r], "role": r if r != "owner" else "admin"} for r in ("owner", "admin", "edit", "collaborate", "view", "none")]
        org = losant.add_object("orgs", {"name": "acme", "members": members})
        ids["org"] = org["id"]
        app = losant.store.add_application("org app", owner_id=org["id"])
        ids["app"] = app.id
        other = losant.store.add_application("other app", owner_id=org["id"])
        ids["other"] = other.id
        # the "none" member may view one application
        org["members"][-1]["applicationRoles"] = [{"resourceId": other.id, "role": "view"}]
        instance = losant.add_object("instances", {"name": "enterprise"})
        ids["instance"] = instance["id"]
        losant.add_object("instance_members", {"userId": ids["iadmin"], "role": "admin"}, instanceId=instance["id"])
        losant.add_object("instance_members", {"userId": ids["iview"], "role": "view"}, instanceId=instance["id"])
        async with aiohttp.ClientSession() as session:
            yield World(losant, session, tokens, ids)


async def test_instance_members_read_admins_create_organizations_strangers_are_refused(world: World) -> None:
    """A user token reads an enterprise instance only as its member; creating an organization in it
    needs an instance administrator, who becomes the new organization's administrator."""
    path = f"/instances/{world.ids['instance']}"
    assert await world.call("stranger", "GET", path) == 403
    assert await world.call("iview", "GET", path) == 200
    assert await world.call("iadmin", "GET", path) == 200
    assert await world.call("stranger", "POST", f"{path}/orgs", {"name": "x"}) == 403
    assert await world.call("iview", "POST", f"{path}/orgs", {"name": "x"}) == 403
    async with world.session.post(world.losant.rest_url + f"{path}/orgs", json={"name": "made"},
                                  headers={"Authorization": f"Bearer {world.tokens['iadmin']}"}) as response:
        assert response.status == 201
        org = json.loads(await response.read())
    async with world.session.get(world.losant.rest_url + f"/orgs/{org['id']}", headers={"Authorization": f"Bearer {world.tokens['iadmin']}"}) as response:
        assert response.status == 200
        members = (await response.json())["members"]
    assert [(m["userId"], m["role"]) for m in members] == [(world.ids["iadmin"], "admin")]
    async with world.session.get(world.losant.rest_url + "/instances", headers={"Authorization": f"Bearer {world.tokens['stranger']}"}) as response:
        assert (await response.json())["items"] == []
    async with world.session.get(world.losant.rest_url + "/instances", headers={"Authorization": f"Bearer {world.tokens['iview']}"}) as response:
        assert [i["id"] for i in (await response.json())["items"]] == [world.ids["instance"]]


@pytest.mark.parametrize(
    ("who", "read", "change", "delete_app", "create_app", "invite"),
    [
        ("admin", 200, 201, 200, 201, 200),
        ("edit", 200, 201, 200, 201, 403),
        ("collaborate", 200, 201, 403, 403, 403),
        ("view", 200, 403, 403, 403, 403),
        ("none", 403, 403, 403, 403, 403),
        ("stranger", 403, 403, 403, 403, 403),
    ],
)
async def test_organization_roles_decide_reads_changes_application_lifecycle_and_administration(
    world: World, who: str, read: int, change: int, delete_app: int, create_app: int, invite: int
) -> None:
    """admin: everything; edit: applications created/deleted, not members; collaborate: changes
    inside applications; view: reads; none (without an applicationRoles entry) and non-members: nothing."""
    app = f"/applications/{world.ids['app']}"
    assert await world.call(who, "GET", f"{app}/devices") == read
    assert await world.call(who, "POST", f"{app}/devices", {"name": "d"}) == change
    assert await world.call(who, "POST", "/applications", {"name": "new", "orgId": world.ids["org"]}) == (
        create_app if who != "stranger" else 403
    )
    assert await world.call(who, "POST", f"/orgs/{world.ids['org']}/invites", {"email": f"x-{who}@example.com", "role": "view"}) == invite
    assert await world.call(who, "DELETE", app) == delete_app


async def test_application_roles_give_a_none_member_access_to_one_application(world: World) -> None:
    """orgMemberPatch.applicationRoles: a per-application role (collaborate, view, none)."""
    assert await world.call("none", "GET", f"/applications/{world.ids['other']}/devices") == 200
    assert await world.call("none", "POST", f"/applications/{world.ids['other']}/devices", {"name": "d"}) == 403
    assert await world.call("none", "GET", f"/applications/{world.ids['app']}/devices") == 403


async def test_application_api_tokens_keep_their_scopes(world: World) -> None:
    """An application API token acts within its scopes only (all.Application.read reads, never writes)."""
    token = world.losant.store.add_token(application_id=world.ids["app"], scopes=["all.Application.read"], kind="api").token
    world.tokens["reader"] = token
    assert await world.call("reader", "GET", f"/applications/{world.ids['app']}/devices") == 200
    assert await world.call("reader", "POST", f"/applications/{world.ids['app']}/devices", {"name": "d"}) == 403
    assert await world.call("reader", "GET", f"/applications/{world.ids['other']}/devices") == 403


async def test_application_lists_follow_the_roles(world: World) -> None:
    """applications.get lists what the user may read: all of the organization's for a viewer, only
    the applicationRoles ones for a ``none`` member, none for a stranger."""

    async def listed(who: str) -> list[str]:
        headers = {"Authorization": f"Bearer {world.tokens[who]}"}
        async with world.session.get(world.losant.rest_url + "/applications", headers=headers) as response:
            return sorted(a["name"] for a in (await response.json())["items"])

    assert await listed("view") == ["org app", "other app"]
    assert await listed("none") == ["other app"]
    assert await listed("stranger") == []
