"""Emulated whole-experience and workflow-set actions: experience delete/bootstrap, bulk flow version
delete, flow import, and virtual button presses (recorded in the flow's log; workflows never run)."""

from __future__ import annotations

import copy
import secrets
from typing import Any

from aiohttp import web

from ...errors import ValidationError
from .._query import doc_matches
from . import _engine
from ._common import Call, Handler, Server, iso

NOT_RUN_FLOW = "the emulator runs no workflows: the press is logged, no path runs"

# experience.delete: what each flag keeps (the rest goes, as Losant's docs list them)
_KEEP_FLAGS = {
    "keepUsers": "experience_users",
    "keepGroups": "experience_groups",
    "keepSlugs": "experience_slugs",
    "keepDomains": "experience_domains",
    "keepViews": "experience_views",
    "keepEndpoints": "experience_endpoints",
}


def _kind(name: str) -> _engine.Kind:
    return _engine.kinds()[name]


def _body(call: Call) -> dict[str, Any]:
    body = _engine.check_body(call)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    return body


def _flag(call: Call, name: str) -> bool:
    raw = (call.q(name) or "").lower()
    if raw not in ("", "true", "false"):
        raise ValidationError(f"{name} must be true or false, not {raw!r}")
    return raw == "true"


def _remove_all(srv: Server, call: Call, kind_name: str, only: Any = None) -> int:
    kind = _kind(kind_name)
    gone = [d for d in _engine.scoped(srv, kind, call.params) if only is None or only(d)]
    for doc in gone:
        _engine.remove_doc(srv, kind, doc)
    return len(gone)


async def experience_delete(srv: Server, call: Call) -> web.Response:
    """Users, groups, slugs, domains, views and endpoints removed unless a ``keep*`` flag keeps them;
    versions with ``removeVersions``, experience workflows with ``removeWorkflows``."""
    for flag, kind_name in _KEEP_FLAGS.items():
        if not _flag(call, flag):
            _remove_all(srv, call, kind_name)
    if _flag(call, "removeVersions"):
        _remove_all(srv, call, "experience_versions")
    if _flag(call, "removeWorkflows"):
        _remove_all(srv, call, "flows", lambda d: d.get("flowClass") == "experience")
    return _engine.reply(call.route.full_name, {"success": True})


async def experience_bootstrap(srv: Server, call: Call) -> web.Response:
    """The starter experience Losant's bootstrap creates: a layout, a page, a login page and their
    endpoints, a group and (``createUsers``) a user whose email and password come back once."""
    body = _body(call)
    params = {"applicationId": call.params["applicationId"]}
    if body.get("replaceExisting"):
        for kind_name in (*_KEEP_FLAGS.values(), "experience_versions"):
            _remove_all(srv, call, kind_name)
    suffix = secrets.token_hex(3)
    store = srv.store
    layout = _engine.new_doc(store, _kind("experience_views"), params, {"name": f"Example Layout {suffix}", "viewType": "layout", "body": "{{ page }}"})
    for name in ("Home Page", "Log In"):
        _engine.new_doc(
            store, _kind("experience_views"), params,
            {"name": f"{name} {suffix}", "viewType": "page", "layoutId": layout["id"], "body": f"<h1>{name}</h1>"},
        )
    for route, method, access in (("/", "get", "authenticated"), ("/login", "get", "public"), ("/login", "post", "public")):
        _engine.new_doc(store, _kind("experience_endpoints"), params, {"route": route, "method": method, "access": access, "enabled": True})
    out: dict[str, Any] = {"resourceSuffix": suffix}
    group_ids = []
    if body.get("createGroups", True):
        group_ids.append(_engine.new_doc(store, _kind("experience_groups"), params, {"name": f"Example Group {suffix}"})["id"])
    if body.get("createUsers", True):
        email, password = f"test.user.{suffix}@example.com", secrets.token_urlsafe(12)
        user = _engine.new_doc(
            store, _kind("experience_users"), params,
            {"email": email, "firstName": "Test", "lastName": "User", "password": password},
        )
        for group_id in group_ids:
            _engine.docs(srv, _kind("experience_groups"))[group_id].setdefault("experienceUserIds", []).append(user["id"])
        out.update(email=email, password=password)
    if body.get("slug"):
        _engine.new_doc(store, _kind("experience_slugs"), params, {"slug": body["slug"], "version": "develop"})
    return _engine.reply(call.route.full_name, out)


# -- workflows -------------------------------------------------------------------------------------


async def flow_versions_delete(srv: Server, call: Call) -> web.Response:
    """Every version of the flow the ``query`` matches (all of them without one), ``{removed, failed}``;
    202 with a job log entry when ``email`` asks for the result by mail."""
    body = _body(call)
    query = body.get("query")
    removed = _remove_all(srv, call, "flow_versions", lambda d: query is None or doc_matches(d, query))
    if body.get("email"):
        return _engine.reply(call.route.full_name, _engine.job(srv, call, "Workflow versions delete", result={"removed": removed, "failed": 0}), 202)
    return _engine.reply(call.route.full_name, {"removed": removed, "failed": 0})


async def flows_import(srv: Server, call: Call) -> web.Response:
    """Each flow and version stored anew (new ids); the maps say which old id became which."""
    body = _body(call)
    flows, versions = body.get("flows") or [], body.get("flowVersions") or []
    if not isinstance(flows, list) or not isinstance(versions, list):
        raise ValidationError("flows and flowVersions must be lists")
    app_id = call.params["applicationId"]
    flow_map: dict[str, str] = {}
    created_flows, created_versions = [], []
    for flow in flows:
        if not isinstance(flow, dict) or not flow.get("name"):
            raise ValidationError("each imported flow needs a name")
        fields = {k: v for k, v in flow.items() if k not in ("id", "flowId", "applicationId", "creationDate", "lastUpdated")}
        doc = _engine.new_doc(srv.store, _kind("flows"), {"applicationId": app_id}, fields)
        if flow.get("id"):
            flow_map[str(flow["id"])] = doc["id"]
        created_flows.append(copy.deepcopy(doc))
    version_map: dict[str, str] = {}
    for version in versions:
        if not isinstance(version, dict):
            raise ValidationError("each imported flow version must be an object")
        flow_id = flow_map.get(str(version.get("flowId")))
        if flow_id is None:
            raise ValidationError(f"flow version {version.get('id')}: its flowId is not one of the imported flows")
        fields = {k: v for k, v in version.items() if k not in ("id", "flowVersionId", "flowId", "applicationId", "creationDate", "lastUpdated")}
        doc = _engine.new_doc(srv.store, _kind("flow_versions"), {"applicationId": app_id, "flowId": flow_id}, fields)
        if version.get("id"):
            version_map[str(version["id"])] = doc["id"]
        created_versions.append(copy.deepcopy(doc))
    out = {"flows": created_flows, "flowVersions": created_versions, "importedFlowIdMap": flow_map, "importedVersionIdMap": version_map}
    return _engine.reply(call.route.full_name, out)


def _flow_log(srv: Server, flow_id: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = srv.store.docs.setdefault("flow_logs", {}).setdefault(flow_id, {"entries": []})["entries"]
    return entries


async def press_virtual_button(srv: Server, call: Call) -> web.Response:
    """The press is checked against the flow's virtual button triggers and logged; no path runs."""
    flow = _engine.require(srv, _kind("flows"), call.params)
    body = _body(call)
    keys = {t.get("key") for t in flow.get("triggers") or [] if isinstance(t, dict) and t.get("type") == "virtualButton"}
    if body.get("key") not in keys:
        raise ValidationError(f"key: the workflow has no virtual button {body.get('key')!r}")
    entry = {
        "time": iso(srv.store.clock()),
        "runCount": 0,
        "pathsCompleted": 0,
        "pathsFailed": 0,
        "wallTime": 0,
        "errors": [{"name": "EmulatorNotRun", "message": f"virtual button {body['key']}: {NOT_RUN_FLOW}"}],
    }
    if body.get("flowVersion"):
        entry["flowVersionId"] = str(body["flowVersion"])
    _flow_log(srv, flow["id"]).append(entry)
    return _engine.reply(call.route.full_name, {"success": True})


async def flow_log_entries(srv: Server, call: Call) -> web.Response:
    """What the emulator logged for the flow (virtual button presses), newest first, ``limit``/``since``."""
    flow = _engine.require(srv, _kind("flows"), call.params)
    version = call.params.get("flowVersionId")
    entries = [e for e in _flow_log(srv, flow["id"]) if version is None or e.get("flowVersionId") == version]
    since = srv.time_q(call, "since", zero_is_now=False)
    if since is not None:
        entries = [e for e in entries if e["time"] >= (iso(since) or "")]
    limit = call.int_q("limit", 1)
    if limit < 1 or limit > 1000:
        raise ValidationError("limit must be 1 to 1000")
    return _engine.reply(call.route.full_name, copy.deepcopy(entries[::-1][:limit]))


HANDLERS: dict[str, Handler] = {
    "experience.delete": experience_delete,
    "experience.bootstrap": experience_bootstrap,
    "flow_versions.delete": flow_versions_delete,
    "flows.api_import": flows_import,
    "flow.press_virtual_button": press_virtual_button,
    "flow.get_log_entries": flow_log_entries,
    "flow_version.get_log_entries": flow_log_entries,
}
