"""Emulated application clone, export and import: the resources copied under new ids, exports as a zip the import reads back."""

from __future__ import annotations

import copy
import io
import json
import zipfile
from typing import Any

from aiohttp import web

from ...errors import ValidationError
from ..store import BlobRecord, new_id
from . import _engine
from ._app_doc import app_json, extras
from ._common import Call, Handler, HttpError, Server, iso
from .executions import newest_logs

NOT_RUN_FETCH = "the emulator fetches nothing beyond loopback: imports from a URL or a repository are logged, not run"
_BUNDLE = "application.json"
_MAX_BUNDLE = 4 * 1024 * 1024


def _body(call: Call) -> dict[str, Any]:
    body = _engine.check_body(call)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    return body


def _flag(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _snapshot(srv: Server, app_id: str, options: dict[str, Any]) -> dict[str, Any]:
    """The application's resources as plain JSON: every document stored under it, devices and rows on request."""
    resources: dict[str, list[dict[str, Any]]] = {}
    for kind in _engine.kinds().values():
        if "applicationId" not in kind.parents or kind.storage == "application_job_logs":
            continue
        if kind.storage == "files" and not _flag(options.get("includeFiles")):
            continue
        found = [copy.deepcopy(d) for d in _engine.docs(srv, kind).values() if d.get("applicationId") == app_id]
        if found:
            resources[kind.storage] = found
    rows: dict[str, Any] = {}
    if _flag(options.get("includeDataTableRows")):
        for table in resources.get("data_tables", []):
            rows[table["id"]] = copy.deepcopy(srv.store.docs.get(f"rows:{table['id']}", {}))
    devices = []
    if _flag(options.get("includeDevices")):
        devices = [srv.device_json(d, connection=False) for d in srv.store.devices.values() if d.application_id == app_id]
    app = srv.store.application(app_id)
    return {
        "application": {"name": app.name, "description": app.description, **{k: copy.deepcopy(v) for k, v in extras(srv, app_id).items()}},
        "resources": resources,
        "rows": rows,
        "devices": devices,
    }


def _restore(srv: Server, app_id: str, snap: dict[str, Any]) -> dict[str, int]:
    """Store a snapshot's resources under ``app_id`` with new ids, references between them remapped."""
    ids: dict[str, str] = {}
    for docs in snap.get("resources", {}).values():
        for doc in docs:
            ids[doc["id"]] = new_id()
    old_app = None
    counts: dict[str, int] = {}
    for storage, docs in snap.get("resources", {}).items():
        kind = next((k for k in _engine.kinds().values() if k.storage == storage), None)
        if kind is None:
            continue
        for doc in docs:
            old_app = old_app or doc.get("applicationId")
            new = copy.deepcopy(doc)
            new["id"] = ids[doc["id"]]
            if kind.id_field is not None:
                new[kind.id_field] = new["id"]
            new["applicationId"] = app_id
            for parent in kind.parents:
                if parent != "applicationId" and isinstance(new.get(parent), str):
                    new[parent] = ids.get(new[parent], new[parent])
            now = iso(srv.store.clock())
            new["creationDate"] = new["lastUpdated"] = now
            _engine.docs(srv, kind)[new["id"]] = new
            counts[storage] = counts.get(storage, 0) + 1
    for table_id, rows in (snap.get("rows") or {}).items():
        if table_id in ids:
            srv.store.docs[f"rows:{ids[table_id]}"] = copy.deepcopy(rows)
    device_ids: dict[str, str] = {}
    pending = list(snap.get("devices") or [])
    # parents first: a peripheral's gateway must exist before it
    pending.sort(key=lambda d: d.get("parentId") is not None)
    for device in pending:
        parent_id = device_ids.get(device.get("parentId") or "")
        record = srv.store.add_device(
            app_id, device["name"], device_class=device.get("deviceClass", "standalone"), parent_id=parent_id,
            attributes=device.get("attributes") or [], tags=device.get("tags") or [], description=device.get("description", ""),
        )
        device_ids[device.get("id", "")] = record.id
    counts["devices"] = len(device_ids)
    return counts


def _bundle(snap: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(_BUNDLE, json.dumps(snap))
    return out.getvalue()


def _read_bundle(upload: Any) -> dict[str, Any]:
    if not isinstance(upload, dict) or not isinstance(upload.get("data"), bytes):
        raise ValidationError("importBundle: a multipart file field with an application export zip")
    try:
        with zipfile.ZipFile(io.BytesIO(upload["data"])) as archive:
            info = archive.getinfo(_BUNDLE)
            if info.file_size > _MAX_BUNDLE:
                raise ValidationError("importBundle: the export is larger than the emulator imports (4 MiB)")
            snap = json.loads(archive.read(_BUNDLE))
    except (zipfile.BadZipFile, KeyError, ValueError):
        raise ValidationError(f"importBundle: not an application export (a zip holding {_BUNDLE})") from None
    if not isinstance(snap, dict) or not isinstance(snap.get("application"), dict):
        raise ValidationError("importBundle: the export names no application")
    return snap


def _wants_job(body: dict[str, Any]) -> bool:
    return bool(body.get("email") or body.get("callbackUrl") or _flag(body.get("forceJob")))


async def application_export(srv: Server, call: Call) -> web.Response:
    """A zip of the application served from the emulator: ``{url}``, or a job whose output holds it."""
    body = _body(call)
    app_id = call.params["applicationId"]
    if body.get("exportType") == "repo":
        queued = _engine.job(srv, call, "Application export to repository", status="queued", error=NOT_RUN_FETCH)
        return _engine.reply(call.route.full_name, queued, 202)
    blob_id = new_id()
    srv.store.blobs[blob_id] = BlobRecord(f"{app_id}.zip", "application/zip", _bundle(_snapshot(srv, app_id, body)))
    url = f"{srv.base_url}/_emulator/blobs/{blob_id}"
    if _wants_job(body):
        return _engine.reply(call.route.full_name, _engine.job(srv, call, "Application export", result={"url": url}), 202)
    return _engine.reply(call.route.full_name, {"url": url})


def _new_app(srv: Server, call: Call, name: str, description: str, owner: str | None) -> str:
    token = call.token
    owner = owner or (token.user_id if token is not None else None)
    return srv.store.add_application(name[:255], description=description, owner_id=owner).id


async def application_clone(srv: Server, call: Call) -> web.Response:
    """A new application holding copies of this one's resources (devices, rows, files on request)."""
    body = _body(call)
    source = srv.store.application(call.params["applicationId"])
    if _flag(body.get("dryRun")):
        return _engine.reply(call.route.full_name, {"success": True, "requiresJob": False}, 200)
    snap = _snapshot(srv, source.id, body)
    owner = body.get("ownerId") if body.get("ownerType") == "organization" else None
    if owner is not None and owner not in srv.store.docs.get("orgs", {}):
        raise ValidationError(f"ownerId: organization {owner} was not found")
    new_id_ = _new_app(srv, call, f"{source.name} Clone", source.description, owner)
    extras(srv, new_id_).update({k: v for k, v in snap["application"].items() if k not in ("name", "description")})
    counts = _restore(srv, new_id_, snap)
    if _wants_job(body):
        out = _engine.job(srv, call, "Application clone", result={"applicationId": new_id_, **counts})
        return _engine.reply(call.route.full_name, out, 202)
    return _engine.reply(call.route.full_name, {"application": app_json(srv, new_id_), "validationErrors": []}, 201)


def _log_import(srv: Server, app_id: str, call: Call, status: str, options: dict[str, Any], error: str | None = None) -> dict[str, Any]:
    now = iso(srv.store.clock())
    record_id = new_id()
    record: dict[str, Any] = {
        "id": record_id,
        "importExecutionId": record_id,
        "applicationId": app_id,
        "importSourceType": "bundle" if "importBundle" in (call.body or {}) else ("application" if options.get("fromApplicationId") else "url"),
        "runQueuedAt": now,
        "status": status,
        "dryRun": _flag(options.get("dryRun")),
    }
    for field in ("fromApplicationId", "importUrl", "conflictBehavior", "email", "callbackUrl"):
        if options.get(field):
            record[field] = options[field]
    if status != "queued":
        record.update(runStartedAt=now, runCompletedAt=now)
    if error:
        record["error"] = {"name": "EmulatorNotRun", "message": error}
    srv.store.docs.setdefault("application_import_logs", {})[record_id] = record
    return record


def _multipart_options(call: Call) -> dict[str, Any]:
    body = call.body if isinstance(call.body, dict) else {}
    raw = body.get("options")
    if raw is None:
        return {}
    if isinstance(raw, dict) and "data" in raw:
        raw = raw["data"]
    if isinstance(raw, (bytes, bytearray)):
        raw = bytes(raw).decode(errors="replace")
    try:
        options = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise ValidationError("options must be a JSON object") from None
    if not isinstance(options, dict):
        raise ValidationError("options must be a JSON object")
    return options


async def application_import(srv: Server, call: Call) -> web.Response:
    """An export bundle or another application's resources added to this one; a URL or repository
    source is logged in the import logs as failed (the emulator fetches nothing)."""
    app_id = call.params["applicationId"]
    options = _multipart_options(call)
    upload = (call.body or {}).get("importBundle") if isinstance(call.body, dict) else None
    if upload is not None:
        snap = _read_bundle(upload)
    elif options.get("fromApplicationId"):
        source = options["fromApplicationId"]
        if source not in srv.store.applications:
            raise HttpError(404, "NotFound", "Application was not found")
        token = call.token
        if token is not None and token.kind == "user" and not srv.user_reaches_app(token.user_id, source):
            raise HttpError(403, "Forbidden", "This user has no access to the source application")
        snap = _snapshot(srv, source, {k: True for k in ("includeFiles", "includeDataTableRows", "includeDevices")})
    elif options.get("importUrl") or options.get("repo"):
        _log_import(srv, app_id, call, "failed", options, NOT_RUN_FETCH)
        return _engine.reply(call.route.full_name, _engine.job(srv, call, "Application import", status="failed", error=NOT_RUN_FETCH), 202)
    else:
        raise ValidationError("give importBundle, or options with fromApplicationId, importUrl or repo")
    if _flag(options.get("dryRun")):
        _log_import(srv, app_id, call, "completed", options)
        return _engine.reply(call.route.full_name, app_json(srv, app_id))
    counts = _restore(srv, app_id, snap)
    _log_import(srv, app_id, call, "completed", options)
    if _wants_job(options):
        return _engine.reply(call.route.full_name, _engine.job(srv, call, "Application import", result=counts), 202)
    return _engine.reply(call.route.full_name, app_json(srv, app_id))


async def applications_import(srv: Server, call: Call) -> web.Response:
    """A new application from an export bundle (``includeDevices``/``includeDataTableRows``/``includeFiles``)."""
    body = call.body if isinstance(call.body, dict) else {}
    snap = _read_bundle(body.get("importBundle"))
    wanted = {"includeDevices": "devices", "includeDataTableRows": "rows"}
    for field, key in wanted.items():
        if not _flag(body.get(field)):
            snap[key] = [] if key == "devices" else {}
    if not _flag(body.get("includeFiles")):
        snap.get("resources", {}).pop("files", None)
    owner = body.get("ownerId") if body.get("ownerType") == "organization" else None
    if owner is not None and owner not in srv.store.docs.get("orgs", {}):
        raise ValidationError(f"ownerId: organization {owner} was not found")
    meta = snap["application"]
    app_id = _new_app(srv, call, str(meta.get("name") or "Imported Application"), str(meta.get("description") or ""), owner)
    extras(srv, app_id).update({k: v for k, v in meta.items() if k not in ("name", "description")})
    _restore(srv, app_id, snap)
    return _engine.reply(call.route.full_name, {"application": app_json(srv, app_id), "validationErrors": []}, 201)


async def import_logs(srv: Server, call: Call) -> web.Response:
    """Newest first; ``limit`` (default 1, as the catalog says) and ``since``."""
    app_id = call.params["applicationId"]
    return _engine.reply(call.route.full_name, newest_logs(srv, call, "application_import_logs", "applicationId", app_id))


async def apply_template(srv: Server, call: Call) -> web.Response:
    """The template's resources added to the application; templates exist only as the emulator stores them."""
    body = _body(call)
    template = srv.store.docs.get("application_templates", {}).get(str(body.get("templateId")))
    if template is None:
        raise HttpError(404, "NotFound", "Application template was not found")
    snap = template.get("bundle")
    if isinstance(snap, dict):
        _restore(srv, call.params["applicationId"], snap)
    return _engine.reply(call.route.full_name, app_json(srv, call.params["applicationId"]))


HANDLERS: dict[str, Handler] = {
    "application.export": application_export,
    "application.clone": application_clone,
    "application.api_import": application_import,
    "applications.api_import": applications_import,
    "application.import_logs": import_logs,
    "application.apply_template": apply_template,
}
