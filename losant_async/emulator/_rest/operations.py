"""Emulated deployments, reports and evaluations: what Losant records for them, with statuses that say
the emulator has no Edge Agent, embedded bundler, report renderer, mailer or rule evaluator."""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

from ..._time import parse_losant_time
from ...errors import ValidationError
from ..store import DeviceRecord
from . import _engine
from ._common import Call, Handler, HttpError, Server, iso
from .devices_bulk import _serve_csv

NOT_RUN_EDGE = "no Edge Agent runs in the emulator: desiredVersion is recorded, currentVersion changes only when an agent reports"
NOT_RUN_EMBEDDED = "no embedded bundle builder: desired flows are recorded, no bundle is built or exported"
NOT_RUN_REPORT = "the emulator renders no reports and sends no email: the job stays queued"
NOT_RUN_RULE = "the emulator has no notification rule evaluator: the evaluation job stays queued"


def _body(call: Call) -> dict[str, Any]:
    body = _engine.check_body(call)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    return body


def _flow(srv: Server, call: Call, flow_id: Any, version: Any = None) -> dict[str, Any]:
    flow = _engine.docs(srv, _engine.kinds()["flows"]).get(str(flow_id))
    if flow is None or flow.get("applicationId") != call.params["applicationId"]:
        raise ValidationError(f"flowId: workflow {flow_id} is not in this application")
    if version is not None and version != "develop":
        versions = _engine.scoped(srv, _engine.kinds()["flow_versions"], {**call.params, "flowId": flow["id"]})
        if not any(v.get("version") == version or v.get("id") == version for v in versions):
            raise ValidationError(f"version: workflow {flow.get('name')} has no version {version!r}")
    return flow


def _targets(srv: Server, call: Call, body: dict[str, Any], device_class: str) -> list[DeviceRecord]:
    app_id = call.params["applicationId"]
    devices = [d for d in srv.store.devices.values() if d.application_id == app_id]
    ids, tags = body.get("deviceIds"), body.get("deviceTags")
    if ids is None and tags is None:
        raise ValidationError("give deviceIds or deviceTags: which devices to deploy to")
    if ids is not None:
        devices = [d for d in devices if d.id in set(ids)]
    if tags is not None:
        pairs = srv.store.parse_tags(tags)
        devices = [d for d in devices if any(p in d.tags for p in pairs)]
    wrong = [d.name for d in devices if d.device_class != device_class]
    if wrong:
        raise ValidationError(f"deployments go to {device_class} devices; {wrong[0]} is not one")
    return devices


# -- edge ------------------------------------------------------------------------------------------


def _edge(srv: Server, call: Call) -> list[dict[str, Any]]:
    return _engine.scoped(srv, _engine.kinds()["edge_deployments"], call.params)


async def edge_release(srv: Server, call: Call) -> web.Response:
    body = _body(call)
    flow = _flow(srv, call, body.get("flowId"), body.get("version"))
    kind = _engine.kinds()["edge_deployments"]
    for device in _targets(srv, call, body, "edgeCompute"):
        found = next((d for d in _edge(srv, call) if d.get("deviceId") == device.id and d.get("flowId") == flow["id"]), None)
        if found is None:
            fields = {"deviceId": device.id, "deviceName": device.name, "flowId": flow["id"], "flowName": flow.get("name", ""),
                      "flowClass": flow.get("flowClass", "edge"), "currentVersion": None}
            found = _engine.new_doc(srv.store, kind, call.params, fields)
        found["desiredVersion"] = body["version"]
        found["lastUpdated"] = iso(srv.store.clock())
    return _engine.reply(call.route.full_name, {"success": True})


async def edge_remove(srv: Server, call: Call) -> web.Response:
    """``desiredVersion`` cleared; a deployment no agent ever ran (no ``currentVersion``) goes at once."""
    body = _body(call)
    found = next((d for d in _edge(srv, call) if d.get("deviceId") == body.get("deviceId") and d.get("flowId") == body.get("flowId")), None)
    if found is None:
        raise HttpError(404, "NotFound", "Edge deployment was not found")
    if found.get("currentVersion") is None:
        _engine.remove_doc(srv, _engine.kinds()["edge_deployments"], found)
    else:
        found["desiredVersion"] = None
        found["lastUpdated"] = iso(srv.store.clock())
    return _engine.reply(call.route.full_name, {"success": True})


async def edge_replace(srv: Server, call: Call) -> web.Response:
    body = _body(call)
    _flow(srv, call, body.get("flowId"), body.get("newVersion"))
    for found in _edge(srv, call):
        if found.get("flowId") == body["flowId"] and found.get("desiredVersion") == body["oldVersion"]:
            found["desiredVersion"] = body["newVersion"]
            found["lastUpdated"] = iso(srv.store.clock())
    return _engine.reply(call.route.full_name, {"success": True})


# -- embedded --------------------------------------------------------------------------------------


def _embedded(srv: Server, call: Call, device: DeviceRecord) -> dict[str, Any]:
    kind = _engine.kinds()["embedded_deployments"]
    found = next((d for d in _engine.scoped(srv, kind, call.params) if d.get("deviceId") == device.id), None)
    if found is None:
        found = _engine.new_doc(srv.store, kind, call.params, {"deviceId": device.id, "deviceName": device.name, "flows": []})
    return found


def _set_flow(found: dict[str, Any], flow_id: str, version: str | None, now: str | None) -> None:
    flows = [f for f in found.get("flows") or [] if f.get("flowId") != flow_id]
    if version is not None:
        flows.append({"flowId": flow_id, "desiredVersion": version})
    found["flows"] = flows
    found["lastUpdated"] = now


async def embedded_release(srv: Server, call: Call) -> web.Response:
    body = _body(call)
    flow = _flow(srv, call, body.get("flowId"), body.get("version"))
    now = iso(srv.store.clock())
    for device in _targets(srv, call, body, "embedded"):
        _set_flow(_embedded(srv, call, device), flow["id"], body["version"], now)
    return _engine.reply(call.route.full_name, {"success": True})


async def embedded_remove(srv: Server, call: Call) -> web.Response:
    body = _body(call)
    kind = _engine.kinds()["embedded_deployments"]
    found = next((d for d in _engine.scoped(srv, kind, call.params) if d.get("deviceId") == body.get("deviceId")), None)
    if found is None or not any(f.get("flowId") == body.get("flowId") for f in found.get("flows") or []):
        raise HttpError(404, "NotFound", "Embedded deployment was not found")
    _set_flow(found, body["flowId"], None, iso(srv.store.clock()))
    return _engine.reply(call.route.full_name, {"success": True})


async def embedded_replace(srv: Server, call: Call) -> web.Response:
    body = _body(call)
    _flow(srv, call, body.get("flowId"), body.get("newVersion"))
    now = iso(srv.store.clock())
    for found in _engine.scoped(srv, _engine.kinds()["embedded_deployments"], call.params):
        if any(f.get("flowId") == body["flowId"] and f.get("desiredVersion") == body["oldVersion"] for f in found.get("flows") or []):
            _set_flow(found, body["flowId"], body["newVersion"], now)
    return _engine.reply(call.route.full_name, {"success": True})


async def embedded_export(srv: Server, call: Call) -> web.Response:
    _body(call)
    return _engine.reply(call.route.full_name, _engine.job(srv, call, "Embedded bundle export", status="queued", error=NOT_RUN_EMBEDDED))


# -- reports, evaluations, payload counts ----------------------------------------------------------


async def send_report(srv: Server, call: Call) -> web.Response:
    body = _body(call)
    if not body.get("toEmail") and not body.get("callbackUrl"):
        raise ValidationError("give toEmail or callbackUrl: where the report goes")
    outbox = srv.store.docs.setdefault("outbox", {})
    out = _engine.job(srv, call, "Dashboard report", status="queued", error=NOT_RUN_REPORT)
    outbox[out["jobId"]] = {"kind": "dashboardReport", "dashboardId": call.params["dashboardId"], "to": copy.deepcopy(body.get("toEmail")),
                            "queuedAt": iso(srv.store.clock()), "status": "queued"}
    return _engine.reply(call.route.full_name, out)


async def validate_context(srv: Server, call: Call) -> web.Response:
    """The context checked against the dashboard's ``contextConfiguration`` (names it knows; defaults filled)."""
    dashboard = _engine.require(srv, _engine.kinds()["dashboards"], call.params)
    body = _body(call)
    if dashboard.get("password") and call.q("password") != dashboard["password"]:
        raise ValidationError("password: does not match the dashboard's password")  # the catalog documents 400/404 only
    config = {c.get("name"): c for c in dashboard.get("contextConfiguration") or [] if isinstance(c, dict)}
    unknown = sorted(set(body) - set(config))
    if unknown:
        raise ValidationError(f"ctx: {unknown[0]} is not a context variable of the dashboard")
    ctx = {str(name): body.get(str(name), conf.get("defaultValue")) for name, conf in config.items()}
    return _engine.reply(call.route.full_name, {"success": True, "ctx": ctx, "dashboard": copy.deepcopy(dashboard)})


async def generate_report(srv: Server, call: Call) -> web.Response:
    _body(call)
    return _engine.reply(call.route.full_name, _engine.job(srv, call, "Instance report", status="queued", error=NOT_RUN_REPORT))


async def evaluate_rule(srv: Server, call: Call) -> web.Response:
    _body(call)
    return _engine.reply(call.route.full_name, _engine.job(srv, call, "Notification rule evaluation", status="queued", error=NOT_RUN_RULE))


async def sandbox_undelete(srv: Server, call: Call) -> web.Response:
    """The scheduled deletion cleared: the sandbox stays."""
    sandbox = _engine.require(srv, _engine.kinds()["instance_sandboxes"], call.params)
    for field in ("permanentDeletion", "dataDeletion"):
        sandbox.pop(field, None)
    sandbox["lastUpdated"] = iso(srv.store.clock())
    return _engine.reply(call.route.full_name, copy.deepcopy(sandbox))


def _time(srv: Server, raw: Any, name: str) -> int | None:
    if raw is None:
        return None
    stamp = parse_losant_time(raw, now=srv.store.clock())
    if stamp is None:
        raise ValidationError(f"{name} is not a time Losant accepts: {raw!r}")
    return stamp


async def payload_counts_export(srv: Server, call: Call) -> web.Response:
    """A CSV of the states each selected device sent in the window, as a completed job's output."""
    from .._query import device_matches

    body = _body(call)
    start, end = _time(srv, body.get("start"), "start"), _time(srv, body.get("end"), "end")
    app_id = call.params["applicationId"]
    devices = [d for d in srv.store.devices.values() if d.application_id == app_id]
    if body.get("query") is not None:
        devices = [d for d in devices if device_matches(d, body["query"])]
    rows = ({"deviceId": d.id, "name": d.name, "deviceState": len(srv.store.states(d.id, start=start, end=end))} for d in devices)
    url, count = _serve_csv(srv, "payload-counts.csv", ["deviceId", "name", "deviceState"], rows)
    return _engine.reply(call.route.full_name, _engine.job(srv, call, "Device payload counts", result={"url": url, "devices": count}))


HANDLERS: dict[str, Handler] = {
    "edge_deployments.release": edge_release,
    "edge_deployments.remove": edge_remove,
    "edge_deployments.replace": edge_replace,
    "embedded_deployments.release": embedded_release,
    "embedded_deployments.remove": embedded_remove,
    "embedded_deployments.replace": embedded_replace,
    "embedded_deployments.export": embedded_export,
    "dashboard.send_report": send_report,
    "application_dashboard.send_report": send_report,
    "dashboard.validate_context": validate_context,
    "instance.generate_report": generate_report,
    "instance_notification_rule.evaluate": evaluate_rule,
    "instance_sandbox.undelete": sandbox_undelete,
    "devices.payload_counts": payload_counts_export,
}
