"""Every catalog action through LosantClient against LocalLosant: a 2xx valid against its response schema or a documented 4xx."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
import pytest_asyncio
import trustme

from losant_async import _json
from losant_async.emulator._rest._engine import Kind, kinds, path_kinds
from losant_async.emulator._rest._listing import list_params
from losant_async.emulator._routes import load_routes
from losant_async.emulator.store._world import world_rows
from losant_async.errors import APIError, DecodeError
from losant_async.rest import LosantClient
from losant_async.rest._operation import Operation
from losant_async.rest.operations import all_operations
from losant_async.testing import LocalLosant
from tests.integration.emulator.emulator_support import assert_schema
from tests.support.schema_examples import (
    catalog,
    example_for_param,
    example_for_schema,
    missing_schemas,
    schema,
    schema_names,
)

pytestmark = pytest.mark.timeout(600)

# Actions that end what the rest of the walk needs: run last, children before parents.
_DESTRUCTIVE = ("delete", "truncate", "remove", "clear_storage_entries", "revoke_invite", "remove_member")
_LAST = ("experience.delete", "instance_org.delete", "application.delete", "org.delete", "me.delete")


def _entry(full_name: str) -> dict[str, Any]:
    resource, action = full_name.split(".")
    for r in catalog()["resources"]:
        if r["name"] == resource:
            for a in r["actions"]:
                if a["name"] == action:
                    found: dict[str, Any] = a
                    return found
    raise KeyError(full_name)


def _order(op: Operation) -> tuple[int, int, str]:
    full = op.full_name
    if full in _LAST:
        return 2, _LAST.index(full), full
    if any(op.action == d or op.action.startswith(d + "_") for d in _DESTRUCTIVE):
        return 1, -op.path.count("/"), full
    return 0, 0, full

# Example bodies that are rightly refused: made-up credentials and the GitHub/SAML sign-ins the
# emulator has no identity provider for (401), an attribute the device already has and a parent
# device that does not exist (400). Since the writes have their effects (issue 21): example bytes
# that are no application export (400), deployments of workflows and versions that do not exist
# (400/404), a virtual button the flow does not have, two-factor codes of no key, executions and
# invitations that were never made (404), a dashboard context naming no configured variable.
_REFUSED = {
    "auth.authenticate_device",
    "auth.authenticate_user",
    "auth.authenticate_user_github",
    "auth.authenticate_user_saml",
    "device_attributes.post",
    "devices.post",
    "application.api_import",
    "applications.api_import",
    "dashboard.validate_context",
    "edge_deployments.release",
    "edge_deployments.remove",
    "edge_deployments.replace",
    "embedded_deployments.release",
    "embedded_deployments.remove",
    "embedded_deployments.replace",
    "flow.press_virtual_button",
    "me.disable_two_factor_auth",
    "me.enable_two_factor_auth",
    "me.invite",
    "me.respond_to_invite",
    "notebook.cancel_execution",
    "org.revoke_invite",
    "org_invites.get",
    "org_invites.post",
    "resource_job.cancel_execution",
}


@dataclass
class Walk:
    losant: LocalLosant
    client: LosantClient
    ids: dict[str, str] = field(default_factory=dict)
    """kind name -> the id of one provisioned object."""
    base: dict[str, str] = field(default_factory=dict)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    """action -> parameter values that differ from the provisioned ids."""


def _params_for(op: Operation, walk: Walk) -> dict[str, str]:
    out = _known(walk)
    for kind in path_kinds(next(r for r in load_routes().routes if r.full_name == op.full_name)):
        if kind.name in walk.ids:
            out[kind.id_param] = walk.ids[kind.name]
    return out


def _known(walk: Walk) -> dict[str, str]:
    """Parameter name -> a provisioned id (the top-level object wins a shared name such as orgId)."""
    ordered = sorted(kinds().values(), key=lambda k: -len(k.parents))
    known = {kind.id_param: walk.ids[kind.name] for kind in ordered if kind.name in walk.ids}
    known.update(walk.base)
    return known


def _with_known_ids(body: Any, walk: Walk) -> Any:
    """An example body whose id fields name provisioned objects (an unknown orgId is a 400)."""
    if not isinstance(body, dict):
        return body
    known = _known(walk)
    return {k: known.get(k, v) if isinstance(v, str) else v for k, v in body.items()}


def _args(op: Operation, walk: Walk) -> tuple[Any, ...]:
    known = {**_params_for(op, walk), **walk.overrides.get(op.full_name, {})}
    entry = _entry(op.full_name)
    body_schema = next((p["schema"] for p in entry["params"] if p["in"] == "body"), None)
    args: list[Any] = []
    chosen = walk.overrides.get(op.full_name, {})
    for param in op.params:
        if param.api_name in chosen:
            value = chosen[param.api_name]
            args.append(value() if callable(value) else value)
        elif param.location == "path":
            args.append(known.get(param.api_name, "0" * 24))
        elif param.location == "body":
            body = example_for_schema(body_schema) if body_schema else example_for_param(param, op)
            args.append(_with_known_ids(body, walk))
        elif param.location == "multipart":
            args.append(example_for_param(param, op) if param.required or param.kind == "file" else None)
        elif param.required:
            args.append(known.get(param.api_name) or example_for_param(param, op))
        else:
            args.append(None)
    return tuple(args)


def _valid_for_any(full_name: str, body: Any) -> str | None:
    """None when ``body`` validates against one of the action's 2xx schemas, else the first error."""
    problems = []
    for response in _entry(full_name)["responses"]:
        if response["schema"] is None or response["schema"] in missing_schemas():
            return None  # nothing to check against (spec/schemas/MISSING.txt)
        try:
            assert_schema(response["schema"], body)
        except AssertionError as exc:
            problems.append(str(exc))
        else:
            return None
    return "; ".join(problems)


def _decodes_typed(op: Operation, body: Any) -> str | None:
    """None when the reply decodes into one of the action's generated response types."""
    types = [t for t in op.responses.values() if t is not None]
    if not types or body is None:
        return None
    data = _json.encode(body)
    problems = []
    for tp in types:
        try:
            _json.decode(data, tp)
        except DecodeError as exc:
            problems.append(str(exc))
        else:
            return None
    return "typed decode: " + "; ".join(problems)


def _date_times_parse(node: Any, path: str = "") -> list[str]:
    """ISO 8601 date strings must carry milliseconds and Z, as Losant sends them."""
    from datetime import datetime

    bad: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            bad.extend(_date_times_parse(value, f"{path}.{key}"))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            bad.extend(_date_times_parse(value, f"{path}[{i}]"))
    elif isinstance(node, str) and len(node) == 24 and node[4] == "-" and node[10] == "T":
        try:
            datetime.fromisoformat(node.replace("Z", "+00:00"))
        except ValueError:
            bad.append(path)
        if not node.endswith("Z") or node[19] != ".":
            bad.append(path)
    return bad


@pytest_asyncio.fixture
async def walk(data_dir: Path | None) -> AsyncIterator[Walk]:
    saved: dict[tuple[str, str], bytes] = {}
    async with LocalLosant(data_dir=data_dir) as losant:
        user = losant.create_user("walker@example.com", "Walk!Passw0rd#1")
        app = losant.create_application(name="walk", owner=user)
        device = app.create_device(name="d1", attributes={"temperature": "number"}, tags={"floor": "3"})
        key = app.create_access_key()
        every_scope = sorted({s for r in load_routes().routes for s in r.scopes})
        token = losant.store.add_token(application_id=None, scopes=every_scope, kind="user", user_id=user.id).token
        async with LosantClient(token, url=losant.rest_url, max_retries=0) as client:
            w = Walk(losant, client)
            w.ids.update({"applications": app.id, "devices": device.id, "application_keys": key.id})
            w.ids["device_attributes"] = "temperature"
            w.base.update({"applicationId": app.id, "deviceId": device.id, "userId": user.id})
            # a table whose columns the example rows and columns fit
            column = {"name": "temperature", "dataType": "number", "constraint": "optional"}
            w.overrides["data_tables.post"] = {"dataTable": {"name": "walk", "columns": [column]}}
            w.overrides["data_table.add_column"] = {
                "dataTableColumn": {"name": "extra", "dataType": "string", "constraint": "optional"}
            }
            w.overrides["data_table.remove_column"] = {"columnName": "extra"}
            w.overrides["data_table_rows.post"] = {"dataTableRow": {"temperature": 21.5}}
            w.overrides["file.move"] = w.overrides["private_file.move"] = {"name": "moved.txt"}
            emails = (f"eu{i}@example.com" for i in itertools.count())
            w.overrides["experience_users.post"] = {
                "experienceUser": lambda: {"email": next(emails), "password": "pw-123456"}
            }
            w.overrides["me.patch"] = {"user": {"firstName": "Walker"}}
            # writes with effects need input that fits the walk's objects
            w.overrides["device_recipe.bulk_create"] = {"bulkInfo": {"count": 2}}
            w.overrides["notebook.execute"] = {"executionOptions": {"templateContext": "{}"}}
            w.overrides["experience.bootstrap"] = {"options": {"replaceExisting": False}}
            w.overrides["flows.api_import"] = {"importData": {"flows": [{"id": "5" * 24, "name": "imported"}], "flowVersions": []}}
            w.overrides["me.transfer_resources"] = {
                "transfer": lambda: {"destinationId": w.ids["orgs"], "destinationType": "organization"}
            }
            w.overrides["org.transfer_resources"] = {"transfer": {"destinationId": user.id, "destinationType": "user"}}
            w.overrides["experience_user.patch"] = {"experienceUser": {"firstName": "Ada"}}
            w.overrides["me.change_password"] = {"data": {"password": "Walk!Passw0rd#1", "newPassword": "Str0ng!Passw0rd#"}}
            # change_password runs first (in name order): the two-factor switches check the new password.
            for action in ("enable_two_factor_auth", "disable_two_factor_auth"):
                w.overrides[f"me.{action}"] = {"data": {"password": "Str0ng!Passw0rd#", "twoFactorCode": "123456"}}
            # Certificates are read (caInfo, certificateInfo): the examples are not PEMs, these are.
            device_ca = trustme.CA()
            w.overrides["application_certificate_authorities.post"] = {
                "applicationCertificateAuthority": {"name": "walk CA", "caBundle": device_ca.cert_pem.bytes().decode()}
            }
            w.overrides["application_certificates.post"] = {
                "applicationCertificate": lambda: {
                    "certificate": device_ca.issue_cert("walk.example").cert_chain_pems[0].bytes().decode()
                }
            }
            w.overrides["application_certificate_authority.patch"] = {
                "applicationCertificateAuthority": {"description": "patched"}
            }
            w.overrides["application_certificate.patch"] = {"applicationCertificate": {"description": "patched"}}
            w.overrides["me.delete"] = {"credentials": {"email": "walker@example.com", "password": "Str0ng!Passw0rd#"}}
            yield w
        saved = dict(world_rows(losant.store))
    if data_dir is not None:
        # every object the walk left (of every collection) comes back from the data directory as it was
        async with LocalLosant(data_dir=data_dir) as again:
            restored = dict(world_rows(again.store))
        saved.pop(("meta", "counters"))
        restored.pop(("meta", "counters"))
        assert restored.keys() == saved.keys()
        assert [k for k in saved if _comparable(restored[k]) != _comparable(saved[k])] == []


def _comparable(body: bytes) -> Any:
    value = msgspec.msgpack.decode(body)
    if isinstance(value, dict) and "connected" in value:
        value["connected"] = 0  # a restarted emulator has nobody connected
    return value


async def _provision(walk: Walk) -> None:
    """One object of every kind: through its ``post`` where it has one, else seeded in the store."""
    by_name = {op.full_name: op for op in all_operations()}
    ordered: list[Kind] = sorted(kinds().values(), key=lambda k: k.path.count("/"))
    for kind in ordered:
        if kind.name in walk.ids:
            continue
        post = by_name.get(f"{kind.name}.post")
        if post is not None and post.path == kind.path:
            try:
                created = await walk.client.request(post, _args(post, walk), raw=True, options=None)
            except APIError as exc:
                raise AssertionError(f"{post.full_name} failed while provisioning: {exc}") from None
            if isinstance(created, dict) and isinstance(created.get("id"), str):
                walk.ids[kind.name] = created["id"]
                continue
        parents = {p: v for p, v in _params_for(post or by_name[f"{kind.item}.get"], walk).items() if p in kind.parents}
        if len(parents) == len(kind.parents):
            doc = walk.losant.add_object(kind.name, example_for_schema(kind.item_schema) if kind.item_schema else {}, **parents)
            walk.ids[kind.name] = doc["id"]
            if kind.name == "instances":  # the walker administers the instance (issue 21: roles decide)
                walk.losant.add_object("instance_members", {"userId": walk.base["userId"], "role": "admin"}, instanceId=doc["id"])


async def _call(walk: Walk, op: Operation) -> tuple[str, Any]:
    """('ok', body) | ('4xx', status) for one action; raises AssertionError on anything else."""
    args = _args(op, walk)
    if op.sse_events is not None:
        stream = walk.client.stream(op, args, raw=True, options=None)
        async with stream:
            opened = asyncio.ensure_future(stream.__anext__())
            await asyncio.sleep(0)
            opened.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await opened
        return "ok", None
    try:
        body = await walk.client.request(op, args, raw=True, options=None)
    except APIError as exc:
        documented = {e["status"] for e in _entry(op.full_name)["errors"]}
        if exc.status >= 500 or exc.status not in documented:
            return "bad", f"{exc.status} (documented: {sorted(documented)}): {exc}"
        return "4xx", exc.status
    return "ok", body


async def test_every_catalog_action_answers_2xx_valid_against_its_schema_or_a_documented_4xx(walk: Walk) -> None:
    await _provision(walk)
    # org.remove_member removes someone else: the walker must stay a member for the org's other actions
    other = walk.losant.create_user("other@example.com", "other-pw")
    walk.losant.store.docs["orgs"][walk.ids["orgs"]]["members"].append({"userId": other.id, "role": "view"})
    walk.overrides["org.remove_member"] = {"userId": other.id}
    ops = sorted(all_operations(), key=_order)
    assert len(ops) == 380
    ok, refused, invalid = [], [], []
    for op in ops:
        outcome, detail = await _call(walk, op)
        if outcome == "bad":
            invalid.append((op.full_name, detail))
            continue
        if outcome == "4xx":
            refused.append((op.full_name, detail))
            continue
        ok.append(op.full_name)
        if op.sse_events is None:
            problem = _valid_for_any(op.full_name, detail)
            if problem:
                invalid.append((op.full_name, problem))
            typed = _decodes_typed(op, detail)
            if typed:
                invalid.append((op.full_name, typed))
            bad_dates = _date_times_parse(detail)
            if bad_dates:
                invalid.append((op.full_name, f"dates without ms/Z at {bad_dates[:3]}"))
    assert not invalid, "\n".join(f"{name}: {problem}" for name, problem in invalid)
    # A documented refusal is allowed, but only where the walk cannot give valid input (see the list).
    assert {name for name, _ in refused} <= _REFUSED, " ".join(sorted({n for n, _ in refused} - _REFUSED))
    assert len(ok) + len(refused) == 380


async def test_every_collection_creates_gets_patches_lists_pages_deletes_then_404s(walk: Walk) -> None:
    by_name = {op.full_name: op for op in all_operations()}
    await _provision(walk)
    checked = 0
    for kind in sorted(kinds().values(), key=lambda k: k.path.count("/")):
        post, get, lst = by_name.get(f"{kind.name}.post"), by_name.get(f"{kind.item}.get"), by_name.get(f"{kind.name}.get")
        patch, delete = by_name.get(f"{kind.item}.patch"), by_name.get(f"{kind.item}.delete")
        if None in (post, get, lst, patch, delete) or kind.name in ("applications", "devices", "device_attributes"):
            continue
        assert post is not None and get is not None and lst is not None and patch is not None and delete is not None
        props = schema(kind.item_schema).get("properties", {}) if kind.item_schema in schema_names() else {}
        if post.path != kind.path or "id" not in props:
            continue  # members are known by their user's id: three posts are one member
        created = [await walk.client.request(post, _args(post, walk), raw=True, options=None) for _ in range(3)]
        ids = [c.get("id") or c.get(kind.id_param) for c in created]
        assert len(set(ids)) == 3 and all(len(i) == 24 and int(i, 16) >= 0 for i in ids), (kind.name, ids)
        if "creationDate" in props:
            assert all(isinstance(c.get("creationDate"), str) for c in created), kind.name
        saved = walk.ids.get(kind.name)
        walk.ids[kind.name] = ids[1]
        got = await walk.client.request(get, _args(get, walk), raw=True, options=None)
        assert (got.get("id") or got.get(kind.id_param)) == ids[1], kind.name
        patch_args = list(_args(patch, walk))
        patched = await walk.client.request(patch, tuple(patch_args), raw=True, options=None)
        assert (patched.get("id") or patched.get(kind.id_param)) == ids[1], kind.name
        assert patched.get("creationDate") == created[1].get("creationDate"), kind.name
        listing = await walk.client.request(lst, _args(lst, walk), raw=True, options=None)
        if isinstance(listing, dict) and "items" in listing:
            listed = {i.get("id") or i.get(kind.id_param) for i in listing["items"]}
            assert set(ids) <= listed, kind.name
            if "perPage" in {p.api_name for p in lst.params}:
                names = [p.api_name for p in lst.params]
                page_args = list(_args(lst, walk))
                page_args[names.index("perPage")] = "2"
                page_args[names.index("page")] = "1"
                if "sortField" in names:
                    # a sortField the catalog accepts for this list (issue 21: others are a 400)
                    accepted = list_params(lst.full_name).sort_fields or ("creationDate",)
                    page_args[names.index("sortField")] = "creationDate" if "creationDate" in accepted else accepted[0]
                    page_args[names.index("sortDirection")] = "desc"
                second = await walk.client.request(lst, tuple(page_args), raw=True, options=None)
                assert second["perPage"] == 2 and second["page"] == 1 and second["count"] == len(second["items"]) <= 2
                assert second["totalCount"] == listing["totalCount"], kind.name
        deleted = await walk.client.request(delete, _args(delete, walk), raw=True, options=None)
        assert deleted == {"success": True}, kind.name
        with pytest.raises(APIError) as gone:
            await walk.client.request(get, _args(get, walk), raw=True, options=None)
        assert gone.value.status == 404 and gone.value.type == "NotFound", kind.name
        if saved is not None:
            walk.ids[kind.name] = saved
        checked += 1
    assert checked >= 30


async def test_a_body_the_schema_refuses_is_400_validation_naming_the_field_and_nothing_is_stored(walk: Walk) -> None:
    app_id = walk.ids["applications"]
    with pytest.raises(APIError) as refused:
        await walk.client.request(
            next(op for op in all_operations() if op.full_name == "webhooks.post"),
            (app_id, {"name": "hook", "responseCode": "not-a-number"}),
            raw=True,
            options=None,
        )
    assert refused.value.status == 400 and refused.value.type == "Validation"
    assert "responseCode" in str(refused.value)
    listing = await walk.client.webhooks.get(application_id=app_id, raw=True)
    assert listing["totalCount"] == 0
