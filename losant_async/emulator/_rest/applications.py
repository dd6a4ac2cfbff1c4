"""Emulated ``applications`` and ``application`` resources: owned by a user or an organization, deleted with all they hold."""

from __future__ import annotations

import copy

from aiohttp import web

from ...errors import ValidationError
from .._roles import app_role, may_create_in_org, owner_from
from . import _engine
from ._app_doc import app_json, extras
from ._common import Call, Handler, HttpError, Server

_RECORD_FIELDS = ("id", "applicationId", "creationDate", "lastUpdated", "ownerId", "ownerType")


async def forget_application(srv: Server, application_id: str) -> None:
    """Remove the application and everything under it; its devices' connections are dropped."""
    srv.store.docs.get("applications", {}).pop(application_id, None)
    _engine.cascade(srv, "applicationId", application_id)
    for device_id in srv.store.remove_application(application_id):
        if srv.on_device_deleted is not None:
            await srv.on_device_deleted(device_id)


async def applications_get(srv: Server, call: Call) -> web.Response:
    token = call.token
    apps = list(srv.store.applications.values())
    if token is not None and token.kind == "user":
        # the applications the user's roles let it read (a "none" member only those applicationRoles name)
        apps = [a for a in apps if app_role(srv.store.docs, owner_from(srv.store.applications), a.id, token.user_id or "") not in (None, "none")]
    elif token is not None and token.application_id is not None:
        apps = [a for a in apps if a.id == token.application_id]
    org_id = call.q("orgId")
    if org_id:
        apps = [a for a in apps if a.owner_id == org_id]
    items = [app_json(srv, a.id) for a in apps]
    return _engine.reply(call.route.full_name, _engine.list_page(call, items))


async def applications_post(srv: Server, call: Call) -> web.Response:
    body = _engine.check_body(call)
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    token = call.token
    owner = token.user_id if token is not None else None
    org_id = body.get("orgId")
    if org_id is not None:
        if org_id not in srv.store.docs.get("orgs", {}):
            raise ValidationError(f"orgId: organization {org_id} was not found")
        if token is not None and token.kind == "user" and not may_create_in_org(srv.store.docs, org_id, token.user_id or ""):
            # docs.losant.com/organizations/overview: Editor permissions or higher create in an organization
            raise HttpError(403, "Forbidden", "Creating an application in an organization needs the edit role or higher")
        owner = org_id
    app = srv.store.add_application(body["name"], description=str(body.get("description", "")), owner_id=owner)
    extras(srv, app.id).update({k: copy.deepcopy(v) for k, v in body.items() if k not in ("name", "description", "orgId")})
    return _engine.reply(call.route.full_name, app_json(srv, app.id))


async def application_get(srv: Server, call: Call) -> web.Response:
    return _engine.reply(call.route.full_name, app_json(srv, call.params["applicationId"]))


async def application_patch(srv: Server, call: Call) -> web.Response:
    """Fields merged into the application."""
    body = _engine.check_body(call)
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    app = srv.store.application(call.params["applicationId"])
    if "name" in body:
        name = body["name"]
        if not isinstance(name, str) or not 1 <= len(name) <= 255:
            raise ValidationError("name must be 1 to 255 characters")
        app.name = name
    if "description" in body:
        app.description = str(body["description"])
    extra = extras(srv, app.id)
    for key, value in body.items():
        if key not in ("name", "description", *_RECORD_FIELDS):
            extra[key] = copy.deepcopy(value)
    app.updated = srv.store.clock()
    return _engine.reply(call.route.full_name, app_json(srv, app.id))


async def application_globals(srv: Server, call: Call) -> web.Response:
    """Globals patched by key: a ``json`` of null removes that global."""
    body = _engine.check_body(call)
    if not isinstance(body, list):
        raise ValidationError("globals must be a list of {key, json}")
    app_id = call.params["applicationId"]
    current = {g["key"]: g for g in extras(srv, app_id).get("globals", []) if isinstance(g, dict)}
    for item in body:
        if item.get("json") is None:
            current.pop(item["key"], None)
        else:
            current[item["key"]] = copy.deepcopy(item)
    extras(srv, app_id)["globals"] = list(current.values())
    srv.store.application(app_id).updated = srv.store.clock()
    return _engine.reply(call.route.full_name, app_json(srv, app_id))


async def application_delete(srv: Server, call: Call) -> web.Response:
    await forget_application(srv, call.params["applicationId"])
    return _engine.reply(call.route.full_name, {"success": True})


async def application_readme(srv: Server, call: Call) -> web.Response:
    app_id = call.params["applicationId"]
    readme = extras(srv, app_id).setdefault("readme", {"readme": "", "applicationId": app_id, "id": app_id})
    if call.route.method == "PATCH":
        body = _engine.check_body(call)
        if isinstance(body, dict):
            readme.update(copy.deepcopy(body))
    return _engine.reply(call.route.full_name, copy.deepcopy(readme))


HANDLERS: dict[str, Handler] = {
    "applications.get": applications_get,
    "applications.post": applications_post,
    "application.get": application_get,
    "application.patch": application_patch,
    "application.globals": application_globals,
    "application.delete": application_delete,
    "application.readme": application_readme,
    "application.readme_patch": application_readme,
}
