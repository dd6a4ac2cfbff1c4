"""Issue 21: every write once answered from its response schema alone has its effect, seen through a read.

Each test calls one write over HTTP with a user token, then reads back what Losant documents it
changes (created objects listed, deleted ones 404, jobs/executions listed with a status). Actions
the emulator cannot run (no notebook kernel, no workflows, no Edge Agent, no mailer) are checked to
be recorded with a status that says so. Docs cited are docs.losant.com/rest-api/<resource>/ and the
catalog's schemas (/work/shared/losant-api)."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from losant_async.emulator._rest.account import totp
from losant_async.testing import LocalLosant

pytestmark = pytest.mark.timeout(120)


@dataclass
class Api:
    losant: LocalLosant
    session: aiohttp.ClientSession
    token: str
    app_id: str
    user_id: str

    async def call(self, method: str, path: str, body: Any = None, *, auth: str | None = None, **query: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {auth or self.token}"}
        params = {k: (json.dumps(v) if isinstance(v, (dict, list)) else str(v).lower() if isinstance(v, bool) else str(v)) for k, v in query.items()}
        kwargs: dict[str, Any] = {"headers": headers, "params": params}
        if isinstance(body, aiohttp.FormData):
            kwargs["data"] = body
        elif body is not None:
            kwargs["json"] = body
        async with self.session.request(method, self.losant.rest_url + path, **kwargs) as response:
            text = await response.text()
            return response.status, (json.loads(text) if text else None)

    async def ok(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        status, out = await self.call(method, path, body, **query)
        assert 200 <= status < 300, (method, path, status, out)
        return out

    def a(self, path: str = "") -> str:
        return f"/applications/{self.app_id}{path}"


@pytest_asyncio.fixture
async def api() -> AsyncIterator[Api]:
    async with LocalLosant() as losant:
        user = losant.create_user("owner@example.com", "Owner!Passw0rd#1")
        app = losant.create_application(name="effects", owner=user)
        token = losant.store.add_token(application_id=None, scopes=["all.User"], kind="user", user_id=user.id).token
        async with aiohttp.ClientSession() as session:
            yield Api(losant, session, token, app.id, user.id)


async def _jobs(api: Api) -> list[dict[str, Any]]:
    return list((await api.ok("GET", api.a("/jobLogs")))["items"])


# -- device recipes --------------------------------------------------------------------------------


async def _recipe(api: Api) -> dict[str, Any]:
    body = {"name": "Thermo", "deviceName": "thermo", "deviceClass": "standalone",
            "tags": [{"key": "site", "value": "north"}], "attributes": [{"name": "temp", "dataType": "number"}]}
    out: dict[str, Any] = await api.ok("POST", api.a("/device-recipes"), body)
    return out


async def test_recipe_bulk_create_from_a_count_creates_devices_with_the_recipes_tags_and_attributes(api: Api) -> None:
    """docs.losant.com/devices/device-recipes: a device from a recipe copies the recipe and gets a
    DeviceRecipe tag with the recipe's name; deviceRecipeBulkCreate is {created, failed, csvResult}."""
    recipe = await _recipe(api)
    out = await api.ok("POST", api.a(f"/device-recipes/{recipe['id']}/bulkCreate"), {"count": 3, "makeUniqueKeySecret": True})
    assert out["created"] == 3 and out["failed"] == 0
    rows = out["csvResult"].strip().splitlines()
    assert rows[0] == "id,name,error,key,secret" and len(rows) == 4
    devices = (await api.ok("GET", api.a("/devices")))["items"]
    assert sorted(d["name"] for d in devices) == ["thermo 1", "thermo 2", "thermo 3"]
    for device in devices:
        assert {"key": "site", "value": "north"} in device["tags"]
        assert {"key": "DeviceRecipe", "value": "Thermo"} in device["tags"]
        assert [a["name"] for a in device["attributes"]] == ["temp"]
    keys = (await api.ok("GET", api.a("/keys")))["items"]
    assert len(keys) == 3


async def test_recipe_bulk_create_from_csv_names_devices_from_the_name_column(api: Api) -> None:
    """deviceRecipeBulkCreatePost: csv with nameColumn/descriptionColumn; one device per row."""
    recipe = await _recipe(api)
    csv_text = "label,about\nboiler,basement\npump,roof\n"
    body = {"csv": csv_text, "nameColumn": "label", "descriptionColumn": "about"}
    out = await api.ok("POST", api.a(f"/device-recipes/{recipe['id']}/bulkCreate"), body)
    assert out["created"] == 2
    devices = {d["name"]: d for d in (await api.ok("GET", api.a("/devices")))["items"]}
    assert set(devices) == {"boiler", "pump"} and devices["pump"]["description"] == "roof"


async def test_recipe_bulk_create_with_an_email_answers_202_and_logs_the_job(api: Api) -> None:
    """deviceRecipe.bulkCreate documents 202 jobEnqueuedResult when the work is queued."""
    recipe = await _recipe(api)
    status, out = await api.call("POST", api.a(f"/device-recipes/{recipe['id']}/bulkCreate"), {"count": 2, "email": "me@example.com"})
    assert status == 202 and out["jobQueued"] is True
    assert len((await api.ok("GET", api.a("/devices")))["items"]) == 2
    assert [j["status"] for j in await _jobs(api)] == ["completed"]


# -- experience and workflows ------------------------------------------------------------------------


async def test_experience_delete_removes_views_endpoints_users_and_groups_unless_kept(api: Api) -> None:
    """experience.delete: removes users, groups, slugs, domains, views and endpoints; keepX keeps them."""
    await api.ok("POST", api.a("/experience/views"), {"name": "page", "viewType": "page", "body": "x"})
    await api.ok("POST", api.a("/experience/endpoints"), {"route": "/a", "method": "get", "access": "public"})
    await api.ok("POST", api.a("/experience/groups"), {"name": "g"})
    await api.ok("DELETE", api.a("/experience"), keepGroups=True)
    assert (await api.ok("GET", api.a("/experience/views")))["count"] == 0
    assert (await api.ok("GET", api.a("/experience/endpoints")))["count"] == 0
    assert (await api.ok("GET", api.a("/experience/groups")))["count"] == 1


async def test_experience_bootstrap_creates_views_endpoints_group_and_a_user_who_can_sign_in(api: Api) -> None:
    """experienceBootstrapResult: resourceSuffix, email, password of the created user."""
    out = await api.ok("PATCH", api.a("/experience/bootstrap"), {"createUsers": True, "createGroups": True})
    assert out["resourceSuffix"] and out["email"].endswith("@example.com") and out["password"]
    assert (await api.ok("GET", api.a("/experience/views")))["count"] == 3
    assert (await api.ok("GET", api.a("/experience/endpoints")))["count"] == 3
    users = (await api.ok("GET", api.a("/experience/users")))["items"]
    assert [u["email"] for u in users] == [out["email"]]


async def _flow(api: Api, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = await api.ok("POST", api.a("/flows"), {"name": "f", "triggers": [], "nodes": [], **extra})
    return out


async def test_bulk_flow_versions_delete_removes_what_the_query_matches(api: Api) -> None:
    """flowVersionsDeletePost {query}; bulkDeleteResponse {removed, failed}."""
    flow = await _flow(api)
    for version in ("v1", "v2", "keep"):
        await api.ok("POST", api.a(f"/flows/{flow['id']}/versions"), {"version": version, "triggers": [], "nodes": []})
    out = await api.ok("POST", api.a(f"/flows/{flow['id']}/versions/delete"), {"query": {"version": {"$ne": "keep"}}})
    assert out == {"removed": 2, "failed": 0}
    left = (await api.ok("GET", api.a(f"/flows/{flow['id']}/versions")))["items"]
    assert [v["version"] for v in left] == ["keep"]


async def test_flows_import_creates_flows_and_versions_with_id_maps(api: Api) -> None:
    """flowsImportResult: flows, flowVersions, importedFlowIdMap, importedVersionIdMap."""
    old = "a" * 24
    body = {"flows": [{"id": old, "name": "imported", "triggers": [], "nodes": []}],
            "flowVersions": [{"id": "b" * 24, "flowId": old, "version": "v1", "triggers": [], "nodes": []}]}
    out = await api.ok("POST", api.a("/flows/import"), body)
    new = out["importedFlowIdMap"][old]
    assert (await api.ok("GET", api.a(f"/flows/{new}")))["name"] == "imported"
    versions = (await api.ok("GET", api.a(f"/flows/{new}/versions")))["items"]
    assert [v["id"] for v in versions] == [out["importedVersionIdMap"]["b" * 24]]


async def test_virtual_button_press_is_logged_as_not_run(api: Api) -> None:
    """flow.pressVirtualButton: the emulator runs no workflow; the press appears in flow.getLogEntries."""
    flow = await _flow(api, triggers=[{"type": "virtualButton", "key": "btn"}])
    status, _ = await api.call("POST", api.a(f"/flows/{flow['id']}/virtualButton"), {"key": "nope"})
    assert status == 400
    await api.ok("POST", api.a(f"/flows/{flow['id']}/virtualButton"), {"key": "btn"})
    log = await api.ok("GET", api.a(f"/flows/{flow['id']}/logs"))
    assert len(log) == 1 and log[0]["runCount"] == 0 and "runs no workflows" in log[0]["errors"][0]["message"]


# -- notebooks and resource jobs --------------------------------------------------------------------


async def test_notebook_execute_answers_an_execution_id_listed_queued_then_canceled(api: Api) -> None:
    """successWithExecutionId; notebookExecutionLogs statuses (queued ... canceled)."""
    nb = await api.ok("POST", api.a("/notebooks"), {"name": "nb", "imageVersion": "v4"})
    out = await api.ok("POST", api.a(f"/notebooks/{nb['id']}/execute"), {"templateContext": "{}"})
    assert out["success"] is True and len(out["executionId"]) == 24
    logs = await api.ok("GET", api.a(f"/notebooks/{nb['id']}/logs"), limit=10)
    assert [(e["id"], e["status"]) for e in logs] == [(out["executionId"], "queued")]
    await api.ok("POST", api.a(f"/notebooks/{nb['id']}/cancelExecution"), executionId=out["executionId"])
    logs = await api.ok("GET", api.a(f"/notebooks/{nb['id']}/logs"))
    assert logs[0]["status"] == "canceled"
    status, _ = await api.call("POST", api.a(f"/notebooks/{nb['id']}/cancelExecution"), executionId="c" * 24)
    assert status == 404


async def test_notebook_upload_stores_the_file_and_the_input_export_is_a_queued_job(api: Api) -> None:
    nb = await api.ok("POST", api.a("/notebooks"), {"name": "nb", "imageVersion": "v4"})
    form = aiohttp.FormData()
    form.add_field("jupyterFile", b'{"cells": []}', filename="nb.ipynb")
    out = await api.ok("POST", api.a(f"/notebooks/{nb['id']}/upload"), form)
    async with api.session.get(out["jupyterFileUrl"]) as response:
        assert await response.read() == b'{"cells": []}'
    await api.ok("POST", api.a(f"/notebooks/{nb['id']}/requestInputDataExport"), {"email": "me@example.com"})
    assert [j["status"] for j in await _jobs(api)] == ["queued"]


async def test_resource_job_execute_is_recorded_as_having_run_nothing(api: Api) -> None:
    """resourceJobExecutionLogs: the emulator has no workflows, so the execution says errored with nothing iterated."""
    job = await api.ok("POST", api.a("/resource-jobs"), {"name": "rj", "resourceType": "device", "queryJson": "{}"})
    out = await api.ok("POST", api.a(f"/resource-jobs/{job['id']}/execute"), {"templateContext": "{}"})
    logs = await api.ok("GET", api.a(f"/resource-jobs/{job['id']}/logs"))
    assert logs[0]["id"] == out["executionId"] and logs[0]["status"] == "errored"
    assert logs[0]["executionSummary"]["succeeded"] == 0
    await api.ok("POST", api.a(f"/resource-jobs/{job['id']}/cancelExecution"), executionId=out["executionId"])
    assert (await api.ok("GET", api.a(f"/resource-jobs/{job['id']}/logs")))[0]["status"] == "errored"


# -- applications: export, clone, import, templates -------------------------------------------------


async def _seed(api: Api) -> dict[str, Any]:
    table = await api.ok("POST", api.a("/data-tables"), {"name": "t", "columns": [{"name": "n", "dataType": "number", "constraint": "optional"}]})
    await api.ok("POST", api.a(f"/data-tables/{table['id']}/rows"), {"n": 5})
    await api.ok("POST", api.a("/devices"), {"name": "dev", "tags": [{"key": "k", "value": "v"}]})
    return table


async def test_application_export_is_a_zip_that_imports_into_another_application(api: Api) -> None:
    """applicationExportResult {url}; application.import takes the bundle back (importBundle)."""
    await _seed(api)
    out = await api.ok("POST", api.a("/export"), {"includeDevices": True, "includeDataTableRows": True})
    async with api.session.get(out["url"]) as response:
        bundle = await response.read()
    assert zipfile.ZipFile(io.BytesIO(bundle)).namelist() == ["application.json"]
    other = await api.ok("POST", "/applications", {"name": "target"})
    form = aiohttp.FormData()
    form.add_field("importBundle", bundle, filename="app.zip")
    await api.ok("POST", f"/applications/{other['id']}/import", form)
    tables = (await api.ok("GET", f"/applications/{other['id']}/data-tables"))["items"]
    assert [t["name"] for t in tables] == ["t"]
    rows = (await api.ok("GET", f"/applications/{other['id']}/data-tables/{tables[0]['id']}/rows"))["items"]
    assert [r["n"] for r in rows] == [5]
    assert [d["name"] for d in (await api.ok("GET", f"/applications/{other['id']}/devices"))["items"]] == ["dev"]
    await api.ok("POST", f"/applications/{other['id']}/import", form)
    # application.importLogs: limit "Max log entries to return (ordered by time descending)", default 1
    assert len(await api.ok("GET", f"/applications/{other['id']}/importLogs")) == 1
    logs = await api.ok("GET", f"/applications/{other['id']}/importLogs", limit=10)
    assert [entry["status"] for entry in logs] == ["completed", "completed"]


async def test_application_import_from_a_url_is_logged_as_failed(api: Api) -> None:
    """The emulator never fetches beyond loopback: the import log says failed, with why."""
    form = aiohttp.FormData()
    form.add_field("options", json.dumps({"importUrl": "https://example.com/app.zip"}), content_type="application/json")
    status, out = await api.call("POST", api.a("/import"), form)
    assert status == 202, out
    logs = await api.ok("GET", api.a("/importLogs"))
    assert logs[0]["status"] == "failed" and "loopback" in logs[0]["error"]["message"]


async def test_applications_import_creates_a_new_application_from_a_bundle(api: Api) -> None:
    await _seed(api)
    out = await api.ok("POST", api.a("/export"), {})
    async with api.session.get(out["url"]) as response:
        bundle = await response.read()
    form = aiohttp.FormData()
    form.add_field("importBundle", bundle, filename="app.zip")
    created = await api.ok("POST", "/applications/import", form)
    new_id = created["application"]["id"]
    assert (await api.ok("GET", f"/applications/{new_id}"))["name"] == "effects"
    assert (await api.ok("GET", f"/applications/{new_id}/devices"))["count"] == 0  # includeDevices not asked


async def test_application_clone_copies_resources_into_a_new_application(api: Api) -> None:
    """application.clone: 201 applicationCreationByTemplateResult; dryRun answers 200 {success}."""
    await _seed(api)
    status, dry = await api.call("POST", api.a("/clone"), {"dryRun": True})
    assert status == 200 and dry["success"] is True
    assert len((await api.ok("GET", "/applications"))["items"]) == 1
    status, out = await api.call("POST", api.a("/clone"), {"includeDevices": True})
    assert status == 201
    new_id = out["application"]["id"]
    assert (await api.ok("GET", f"/applications/{new_id}/data-tables"))["count"] == 1
    assert (await api.ok("GET", f"/applications/{new_id}/devices"))["count"] == 1


async def test_apply_template_of_an_unknown_template_is_404(api: Api) -> None:
    """The emulator holds no templates (applicationTemplates.get lists none)."""
    status, out = await api.call("PATCH", api.a("/applyTemplate"), {"templateId": "d" * 24})
    assert status == 404 and out["type"] == "NotFound"


# -- invitations and account ---------------------------------------------------------------------------


async def test_invite_accept_by_the_invited_user_makes_them_a_member(api: Api) -> None:
    """org.inviteMember -> orgInvites; me.invites / me.respondToInvite {action: accept} -> {result, orgId}."""
    org = await api.ok("POST", "/orgs", {"name": "acme"})
    invited = api.losant.create_user("new@example.com", "New!Passw0rd#1")
    their = api.losant.store.add_token(application_id=None, scopes=["all.User"], kind="user", user_id=invited.id).token
    pending = await api.ok("POST", f"/orgs/{org['id']}/invites", {"email": "new@example.com", "role": "edit"})
    assert [(p["email"], p["role"]) for p in pending] == [("new@example.com", "edit")]
    assert [p["email"] for p in await api.ok("GET", f"/orgs/{org['id']}/invites")] == ["new@example.com"]
    status, mine = await api.call("GET", "/me/invites", auth=their)
    assert status == 200 and [m["orgName"] for m in mine] == ["acme"]
    status, out = await api.call("POST", f"/me/invites/{mine[0]['id']}", {"action": "accept"}, auth=their)
    assert status == 200 and out == {"result": "accepted", "orgId": org["id"]}
    members = (await api.ok("GET", f"/orgs/{org['id']}"))["members"]
    assert any(m.get("userId") == invited.id and m["role"] == "edit" for m in members)
    assert await api.ok("GET", f"/orgs/{org['id']}/invites") == []


async def test_revoked_invitation_is_gone_and_its_token_answers_404(api: Api) -> None:
    org = await api.ok("POST", "/orgs", {"name": "acme"})
    pending = await api.ok("POST", f"/orgs/{org['id']}/invites", {"email": "x@example.com", "role": "view"})
    token = api.losant.store.docs["invite_tokens"][pending[0]["id"]]
    info = await api.ok("GET", "/invites", token=token, email="x@example.com")
    assert info["orgName"] == "acme" and info["role"] == "view"
    assert await api.ok("DELETE", f"/orgs/{org['id']}/invites", inviteId=pending[0]["id"]) == []
    status, _ = await api.call("GET", "/invites", token=token, email="x@example.com")
    assert status == 404


async def test_invite_action_by_token_accepts_for_the_user_with_that_email(api: Api) -> None:
    """orgInviteAction {email, token, accept} -> orgInviteResult {accepted, orgId}."""
    org = await api.ok("POST", "/orgs", {"name": "acme"})
    user = api.losant.create_user("y@example.com", "Y!Passw0rd#123")
    pending = await api.ok("POST", f"/orgs/{org['id']}/invites", {"email": "y@example.com", "role": "view"})
    token = api.losant.store.docs["invite_tokens"][pending[0]["id"]]
    out = await api.ok("POST", "/invites", {"email": "y@example.com", "token": token, "accept": True})
    assert out == {"accepted": True, "orgId": org["id"]}
    assert any(m.get("userId") == user.id for m in (await api.ok("GET", f"/orgs/{org['id']}"))["members"])


async def test_resend_instance_org_invite_renews_it(api: Api) -> None:
    instance = api.losant.add_object("instances", {"name": "inst"})
    api.losant.add_object("instance_members", {"userId": api.user_id, "role": "admin"}, instanceId=instance["id"])
    org = api.losant.add_object("instance_orgs", {"name": "o", "members": [{"userId": api.user_id, "role": "admin"}]}, instanceId=instance["id"])
    invite = api.losant.add_object("instance_org_invites", {"email": "z@example.com", "role": "view"}, instanceId=instance["id"], orgId=org["id"])
    status, out = await api.call("POST", f"/instances/{instance['id']}/orgs/{org['id']}/invites/{invite['id']}", {"role": "edit"})
    assert status == 201 and out["role"] == "edit" and out["inviteDate"], out


async def test_two_factor_auth_is_enabled_with_a_current_code_and_disabled_again(api: Api) -> None:
    """multiFactorAuthInfo {key, keyUri}; multiFactorAuthEnable {password, twoFactorCode} -> me.twoFactorAuthEnabled."""
    info = await api.ok("PATCH", "/me/generateTwoFactorAuth")
    base64.b32decode(info["key"])
    status, _ = await api.call("PATCH", "/me/enableTwoFactorAuth", {"password": "Owner!Passw0rd#1", "twoFactorCode": "000000"})
    assert status == 400 or totp(info["key"], api.losant.store.clock()) == "000000"
    code = totp(info["key"], api.losant.store.clock())
    me = await api.ok("PATCH", "/me/enableTwoFactorAuth", {"password": "Owner!Passw0rd#1", "twoFactorCode": code})
    assert me["twoFactorAuthEnabled"] is True
    me = await api.ok("PATCH", "/me/disableTwoFactorAuth", {"password": "Owner!Passw0rd#1", "twoFactorCode": code})
    assert me["twoFactorAuthEnabled"] is False


async def test_disconnect_github_removes_the_link(api: Api) -> None:
    api.losant.store.docs.setdefault("users", {}).setdefault(api.user_id, {})["githubName"] = "octo"
    assert (await api.ok("GET", "/me"))["githubName"] == "octo"
    me = await api.ok("PATCH", "/me/disconnectGithub")
    assert "githubName" not in me


async def test_verify_email_is_recorded_in_the_outbox(api: Api) -> None:
    await api.ok("POST", "/me/verify-email")
    assert [m["to"] for m in api.losant.store.docs["outbox"].values()] == ["owner@example.com"]


async def test_recent_items_are_kept_newest_first(api: Api) -> None:
    """recentItem {itemType, itemId, parentId}; recentItemList {itemType, items}."""
    for item in ("a" * 24, "b" * 24, "a" * 24):
        await api.ok("POST", "/me/recentItems", {"itemType": "application", "itemId": item})
    out = await api.ok("GET", "/me/recentItems", itemType="application")
    assert [i["id"] for i in out["items"]] == ["a" * 24, "b" * 24]


async def test_transfer_resources_moves_the_application_to_an_org_and_back(api: Api) -> None:
    """resourceTransfer {destinationId, destinationType, applicationIds}."""
    org = await api.ok("POST", "/orgs", {"name": "acme"})
    body = {"destinationId": org["id"], "destinationType": "organization", "applicationIds": [api.app_id]}
    await api.ok("PATCH", "/me/transferResources", body)
    assert (await api.ok("GET", api.a()))["orgId"] == org["id"]
    back = {"destinationId": api.user_id, "destinationType": "user", "applicationIds": [api.app_id]}
    await api.ok("PATCH", f"/orgs/{org['id']}/transferResources", back)
    assert "orgId" not in await api.ok("GET", api.a())


# -- deployments, reports, evaluations, sandboxes, payload counts -----------------------------------


async def _edge_setup(api: Api, device_class: str) -> tuple[dict[str, Any], dict[str, Any]]:
    device = await api.ok("POST", api.a("/devices"), {"name": "agent", "deviceClass": device_class})
    flow = await _flow(api, flowClass="edge" if device_class == "edgeCompute" else "embedded")
    for version in ("v1", "v2"):
        await api.ok("POST", api.a(f"/flows/{flow['id']}/versions"), {"version": version, "triggers": [], "nodes": []})
    return device, flow


async def test_edge_release_replace_remove_change_the_desired_version(api: Api) -> None:
    """edgeDeployment: desiredVersion set by release/replace; currentVersion only an agent reports."""
    device, flow = await _edge_setup(api, "edgeCompute")
    await api.ok("POST", api.a("/edge/deployments/release"), {"flowId": flow["id"], "version": "v1", "deviceIds": [device["id"]]})
    items = (await api.ok("GET", api.a("/edge/deployments")))["items"]
    assert [(d["deviceId"], d["desiredVersion"], d["currentVersion"]) for d in items] == [(device["id"], "v1", None)]
    await api.ok("POST", api.a("/edge/deployments/replace"), {"flowId": flow["id"], "oldVersion": "v1", "newVersion": "v2"})
    assert (await api.ok("GET", api.a("/edge/deployments")))["items"][0]["desiredVersion"] == "v2"
    await api.ok("POST", api.a("/edge/deployments/remove"), {"flowId": flow["id"], "deviceId": device["id"]})
    assert (await api.ok("GET", api.a("/edge/deployments")))["count"] == 0


async def test_embedded_release_replace_remove_and_export(api: Api) -> None:
    device, flow = await _edge_setup(api, "embedded")
    await api.ok("POST", api.a("/embedded/deployments/release"), {"flowId": flow["id"], "version": "v1", "deviceIds": [device["id"]]})
    items = (await api.ok("GET", api.a("/embedded/deployments")))["items"]
    assert items[0]["flows"] == [{"flowId": flow["id"], "desiredVersion": "v1"}]
    await api.ok("POST", api.a("/embedded/deployments/replace"), {"flowId": flow["id"], "oldVersion": "v1", "newVersion": "v2"})
    assert (await api.ok("GET", api.a("/embedded/deployments")))["items"][0]["flows"][0]["desiredVersion"] == "v2"
    await api.ok("POST", api.a("/embedded/deployments/remove"), {"flowId": flow["id"], "deviceId": device["id"]})
    assert (await api.ok("GET", api.a("/embedded/deployments")))["items"][0]["flows"] == []
    await api.ok("POST", api.a("/embedded/deployments/export"), {"deviceId": device["id"]})
    assert [j["status"] for j in await _jobs(api)] == ["queued"]


async def test_dashboard_reports_are_queued_jobs_and_context_is_validated(api: Api) -> None:
    dash = await api.ok("POST", api.a("/dashboards"), {"name": "d", "contextConfiguration": [{"name": "site", "type": "string", "defaultValue": "n"}]})
    await api.ok("POST", api.a(f"/dashboards/{dash['id']}"), {"toEmail": ["a@example.com"]})
    await api.ok("POST", f"/dashboards/{dash['id']}", {"toEmail": ["a@example.com"]})
    assert [j["status"] for j in await _jobs(api)] == ["queued"]  # the application's; the other has none
    assert len(api.losant.store.docs["outbox"]) == 2
    out = await api.ok("POST", f"/dashboards/{dash['id']}/validateContext", {"site": "s"})
    assert out["success"] is True and out["ctx"] == {"site": "s"}
    status, _ = await api.call("POST", f"/dashboards/{dash['id']}/validateContext", {"nope": 1})
    assert status == 400


async def test_instance_report_and_rule_evaluation_answer_jobs_and_sandbox_undelete_clears_deletion(api: Api) -> None:
    instance = api.losant.add_object("instances", {"name": "inst"})
    api.losant.add_object("instance_members", {"userId": api.user_id, "role": "admin"}, instanceId=instance["id"])
    out = await api.ok("POST", f"/instances/{instance['id']}/generateReport", {})
    assert out["jobQueued"] is True
    rule = api.losant.add_object("instance_notification_rules", {"name": "r"}, instanceId=instance["id"])
    assert (await api.ok("POST", f"/instances/{instance['id']}/notification-rules/{rule['id']}/evaluate", {}))["jobQueued"] is True
    sandbox = api.losant.add_object("instance_sandboxes", {"email": "s@example.com", "permanentDeletion": "2030-01-01T00:00:00.000Z"}, instanceId=instance["id"])
    out = await api.ok("PATCH", f"/instances/{instance['id']}/sandboxes/{sandbox['id']}/undelete")
    assert "permanentDeletion" not in out
    assert "permanentDeletion" not in await api.ok("GET", f"/instances/{instance['id']}/sandboxes/{sandbox['id']}")


async def test_devices_payload_counts_export_counts_the_states_each_device_sent(api: Api) -> None:
    device = await api.ok("POST", api.a("/devices"), {"name": "dev", "attributes": [{"name": "t", "dataType": "number"}]})
    now = api.losant.store.clock()
    for value in (1, 2):
        await api.ok("POST", api.a(f"/devices/{device['id']}/state"), {"data": {"t": value}, "time": now - 1000 * value})
    await api.ok("POST", api.a("/devices/payloadCounts"), {})
    job = (await _jobs(api))[0]
    assert job["status"] == "completed"
    async with api.session.get(job["output"]["url"]) as response:
        text = await response.text()
    assert text.splitlines()[1].endswith(",dev,2")


async def test_device_summaries_list_names_tag_keys_values_and_attribute_names(api: Api) -> None:
    await api.ok("POST", api.a("/devices"), {"name": "alpha", "tags": [{"key": "site", "value": "n"}], "attributes": [{"name": "t", "dataType": "number"}]})
    await api.ok("POST", api.a("/devices"), {"name": "beta", "tags": [{"key": "site", "value": "s"}]})
    names = await api.ok("GET", api.a("/devices/deviceNames"), startsWith="al")
    assert [d["name"] for d in names["deviceSummary"]] == ["alpha"]
    assert (await api.ok("GET", api.a("/devices/tagKeys")))["tagKeys"] == ["site"]
    assert (await api.ok("GET", api.a("/devices/tagValues"), key="site"))["tagValues"] == ["n", "s"]
    assert (await api.ok("GET", api.a("/devices/attributeNames")))["attributeNames"] == ["t"]


async def test_archive_actions_are_queued_jobs_saying_why(api: Api) -> None:
    status, out = await api.call("GET", api.a("/archiveData"), date="1700000000000")
    assert status == 202 and out["jobQueued"] is True
    job = (await _jobs(api))[0]
    assert job["status"] == "queued" and "bucket" in job["error"]["message"]


async def test_deleting_a_notebook_drops_its_executions(api: Api) -> None:
    """Deletes cascade: a notebook's executions go with it (a new notebook never sees them)."""
    nb = await api.ok("POST", api.a("/notebooks"), {"name": "nb", "imageVersion": "v4"})
    await api.ok("POST", api.a(f"/notebooks/{nb['id']}/execute"), {})
    assert len(api.losant.store.docs["notebook_executions"]) == 1
    await api.ok("DELETE", api.a(f"/notebooks/{nb['id']}"))
    assert api.losant.store.docs["notebook_executions"] == {}
