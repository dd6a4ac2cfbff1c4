"""Emulated notebook and resource job executions: recorded as Losant records them, never run (no kernel, no workflows)."""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

from ...errors import ValidationError
from ..store import new_id
from . import _engine
from ._common import Call, Handler, HttpError, Server, iso

NOT_RUN_NOTEBOOK = "the emulator has no notebook kernel: executions stay queued until canceled"
NOT_RUN_RESOURCE_JOB = "the emulator runs no workflows: a resource job execution iterates nothing"


def _source(call: Call) -> dict[str, str]:
    token = call.token
    if token is None:
        return {}
    if token.kind == "user" and token.user_id:
        return {"sourceType": "user", "sourceId": token.user_id}
    return {"sourceType": "apiToken", "sourceId": token.id}


def _body(call: Call) -> dict[str, Any]:
    body = _engine.check_body(call)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    return body


def _store(srv: Server, name: str) -> dict[str, dict[str, Any]]:
    return srv.store.docs.setdefault(name, {})


def newest_logs(srv: Server, call: Call, store: str, owner_field: str, owner: str) -> list[dict[str, Any]]:
    """Newest first; ``since`` (a time) and ``limit`` (default 1, as Losant's) as the catalog documents."""
    since = srv.time_q(call, "since", zero_is_now=False)
    limit = call.int_q("limit", 1)
    if limit < 1 or limit > 1000:
        raise ValidationError("limit must be 1 to 1000")
    items = [d for d in _store(srv, store).values() if d.get(owner_field) == owner]
    if since is not None:
        stamp = iso(since) or ""
        items = [d for d in items if str(d.get("runQueuedAt", "")) >= stamp]
    items.sort(key=lambda d: (str(d.get("runQueuedAt", "")), d["id"]), reverse=True)
    return [copy.deepcopy(d) for d in items[:limit]]


def _cancel(srv: Server, call: Call, store: str, owner_field: str, owner: str, label: str, cancelled: str) -> None:
    wanted = call.q("executionId")
    if not wanted:
        raise ValidationError("executionId: which execution to cancel")
    record = _store(srv, store).get(wanted)
    if record is None or record.get(owner_field) != owner:
        raise HttpError(404, "NotFound", f"{label} execution was not found")
    if record["status"] in ("completed", "errored", "canceled", "timeout"):
        return  # already over: Losant leaves a finished execution as it is
    record["status"] = cancelled
    record["runCompletedAt"] = iso(srv.store.clock())
    record.update({"cancel" + k[0].upper() + k[1:]: v for k, v in _source(call).items()})


# -- notebooks -------------------------------------------------------------------------------------


def _notebook(srv: Server, call: Call) -> dict[str, Any]:
    return _engine.require(srv, _engine.kinds()["notebooks"], call.params)


async def notebook_execute(srv: Server, call: Call) -> web.Response:
    """An execution record (status ``queued``) and its id, as Losant answers ``notebook.execute``."""
    notebook = _notebook(srv, call)
    body = _body(call)
    now = srv.store.clock()
    relative = body.get("relativeTo")
    stamp = srv.store.clock() if relative is None else _relative(srv, relative)
    execution_id = new_id()
    record: dict[str, Any] = {
        "id": execution_id,
        "notebookExecutionId": execution_id,
        "notebookId": notebook["id"],
        "applicationId": call.params["applicationId"],
        "imageVersion": notebook.get("imageVersion") or "v4",
        "status": "queued",
        "executionRelativeTo": iso(stamp),
        "runQueuedAt": iso(now),
        "maxAllowedRunMinutes": 60,
        **_source(call),
    }
    if "templateContext" in body:
        record["templateContext"] = body["templateContext"]
    _store(srv, "notebook_executions")[execution_id] = record
    return _engine.reply(call.route.full_name, {"success": True, "executionId": execution_id})


def _relative(srv: Server, raw: Any) -> int:
    from ..._time import parse_losant_time

    value = raw.get("$date") if isinstance(raw, dict) else raw
    stamp = parse_losant_time(value, now=srv.store.clock())
    if stamp is None:
        raise ValidationError(f"relativeTo is not a time Losant accepts: {raw!r}")
    return stamp


async def notebook_logs(srv: Server, call: Call) -> web.Response:
    notebook = _notebook(srv, call)
    return _engine.reply(call.route.full_name, newest_logs(srv, call, "notebook_executions", "notebookId", notebook["id"]))


async def notebook_cancel(srv: Server, call: Call) -> web.Response:
    notebook = _notebook(srv, call)
    _cancel(srv, call, "notebook_executions", "notebookId", notebook["id"], "Notebook", "canceled")
    return _engine.reply(call.route.full_name, {"success": True})


async def notebook_upload(srv: Server, call: Call) -> web.Response:
    """The ``jupyterFile`` kept as the notebook's file (served back from the emulator's blob store)."""
    from ..store import BlobRecord

    notebook = _notebook(srv, call)
    body = call.body if isinstance(call.body, dict) else {}
    upload = body.get("jupyterFile")
    if not isinstance(upload, dict) or not isinstance(upload.get("data"), bytes):
        raise ValidationError("jupyterFile: a multipart file field with the .ipynb notebook")
    if len(upload["data"]) > 4 * 1024 * 1024:
        raise ValidationError("jupyterFile is larger than 4 MiB")
    blob_id = new_id()
    srv.store.blobs[blob_id] = BlobRecord(str(upload.get("filename") or "notebook.ipynb"), "application/x-ipynb+json", upload["data"])
    notebook["jupyterFileUrl"] = f"{srv.base_url}/_emulator/blobs/{blob_id}"
    notebook["lastUpdated"] = iso(srv.store.clock())
    return _engine.reply(call.route.full_name, copy.deepcopy(notebook))


async def notebook_input_export(srv: Server, call: Call) -> web.Response:
    """A job log entry, ``queued``: assembling a notebook's inputs needs the notebook runner."""
    notebook = _notebook(srv, call)
    _body(call)
    out = _engine.job(srv, call, f"Notebook input data export: {notebook.get('name', '')}", status="queued", error=NOT_RUN_NOTEBOOK)
    return _engine.reply(call.route.full_name, out)


# -- resource jobs ---------------------------------------------------------------------------------


def _resource_job(srv: Server, call: Call) -> dict[str, Any]:
    return _engine.require(srv, _engine.kinds()["resource_jobs"], call.params)


async def resource_job_execute(srv: Server, call: Call) -> web.Response:
    """An execution record that says it ran nothing (``errored``, every resource ``failed``)."""
    job = _resource_job(srv, call)
    body = _body(call)
    now = iso(srv.store.clock())
    execution_id = new_id()
    record: dict[str, Any] = {
        "id": execution_id,
        "resourceJobExecutionId": execution_id,
        "resourceJobId": job["id"],
        "applicationId": call.params["applicationId"],
        "status": "errored",
        "resourceType": job.get("resourceType", "device"),
        "queryJson": job.get("queryJson") or job.get("query"),
        "runQueuedAt": now,
        "runStartedAt": now,
        "runCompletedAt": now,
        "executionSummary": {"succeeded": 0, "failed": 0, "timedOut": 0, "inProgress": 0, "remaining": 0},
        "error": NOT_RUN_RESOURCE_JOB,
        **_source(call),
    }
    for field in ("templateContext", "iterationDelay", "iterationTimeout", "maxIterationConcurrency", "accumulator"):
        if field in body:
            record[field] = body[field]
    _store(srv, "resource_job_executions")[execution_id] = record
    return _engine.reply(call.route.full_name, {"success": True, "executionId": execution_id})


async def resource_job_logs(srv: Server, call: Call) -> web.Response:
    job = _resource_job(srv, call)
    return _engine.reply(call.route.full_name, newest_logs(srv, call, "resource_job_executions", "resourceJobId", job["id"]))


async def resource_job_cancel(srv: Server, call: Call) -> web.Response:
    job = _resource_job(srv, call)
    _cancel(srv, call, "resource_job_executions", "resourceJobId", job["id"], "Resource job", "canceled")
    return _engine.reply(call.route.full_name, {"success": True})


HANDLERS: dict[str, Handler] = {
    "notebook.execute": notebook_execute,
    "notebook.logs": notebook_logs,
    "notebook.cancel_execution": notebook_cancel,
    "notebook.upload": notebook_upload,
    "notebook.request_input_data_export": notebook_input_export,
    "resource_job.execute": resource_job_execute,
    "resource_job.logs": resource_job_logs,
    "resource_job.cancel_execution": resource_job_cancel,
}
