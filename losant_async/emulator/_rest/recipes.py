"""Emulated device recipe bulk creation: devices from a count or a CSV, each with the recipe's settings."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from aiohttp import web

from ...errors import ValidationError
from ..store import DeviceRecord
from . import _engine
from ._common import Call, Handler, Server, json_response
from .devices import shaped

_MAX_DEVICES = 10_000  # one bulk create; the CSV body itself is bounded by the server's body limit


def _recipe(srv: Server, call: Call) -> dict[str, Any]:
    return _engine.require(srv, _engine.kinds()["device_recipes"], call.params)


def _rows(body: dict[str, Any]) -> list[dict[str, str]]:
    """One dict per device to create: from ``count`` (empty rows) or the CSV's rows."""
    text, count = body.get("csv"), body.get("count")
    if (text is None) == (count is None):
        raise ValidationError("give exactly one of count and csv: how many devices to create")
    if count is not None:
        if not isinstance(count, int) or not 1 <= count <= _MAX_DEVICES:
            raise ValidationError(f"count must be an integer from 1 to {_MAX_DEVICES}")
        return [{} for _ in range(count)]
    rows = list(csv.DictReader(io.StringIO(str(text))))
    if not rows:
        raise ValidationError("csv has no rows below its header")
    if len(rows) > _MAX_DEVICES:
        raise ValidationError(f"csv has {len(rows)} rows; at most {_MAX_DEVICES} devices per bulk create")
    return rows


def _create(srv: Server, call: Call, recipe: dict[str, Any], row: dict[str, str], body: dict[str, Any], index: int) -> DeviceRecord:
    name_col, desc_col = body.get("nameColumn"), body.get("descriptionColumn")
    parent_col = body.get("parentIdColumn") or body.get("gatewayIdColumn")
    name = row.get(name_col) if name_col else None
    if not name:
        base = recipe.get("deviceName") or recipe.get("name") or "Device"
        name = base if "csv" in body else f"{base} {index + 1}"
    description = (row.get(desc_col) if desc_col else None) or recipe.get("deviceDescription") or ""
    parent = (row.get(parent_col) if parent_col else None) or body.get("parentId") or body.get("gatewayId")
    parent = parent or recipe.get("parentId") or recipe.get("gatewayId")
    # Losant: the device copies the recipe and gets one more tag, DeviceRecipe = the recipe's name.
    tags = [t for t in recipe.get("tags") or [] if isinstance(t, dict) and t.get("key") != "DeviceRecipe"]
    tags.append({"key": "DeviceRecipe", "value": str(recipe.get("name", ""))})
    return srv.store.add_device(
        call.params["applicationId"],
        str(name)[:255],
        device_class=recipe.get("deviceClass") or "standalone",
        parent_id=parent or None,
        attributes=recipe.get("attributes") or [],
        tags=tags,
        description=str(description),
    )


async def bulk_create(srv: Server, call: Call) -> web.Response:
    """Losant's ``deviceRecipe.bulkCreate``: 201 ``{created, failed, csvResult}``, or 202 and a job log
    entry when an ``email``/``callbackUrl`` asks for the result to be delivered (both create the devices)."""
    recipe = _recipe(srv, call)
    body = _engine.check_body(call)
    if not isinstance(body, dict):
        raise ValidationError("bulkInfo must be a JSON object")
    rows = _rows(body)
    out = io.StringIO()
    columns = ["id", "name", "error"] + (["key", "secret"] if body.get("makeUniqueKeySecret") else [])
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    created = failed = 0
    for index, row in enumerate(rows):
        try:
            device = _create(srv, call, recipe, row, body, index)
        except ValidationError as exc:
            failed += 1
            writer.writerow({"id": "", "name": row.get(body.get("nameColumn") or "", ""), "error": str(exc)})
            continue
        created += 1
        line = {"id": device.id, "name": device.name, "error": ""}
        if body.get("makeUniqueKeySecret"):
            key = srv.store.add_key(device.application_id, device_ids=[device.id], name=f"{device.name} key", filter_type="whitelist")
            line.update(key=key.key, secret=key.secret)
        writer.writerow(line)
    result = {"created": created, "failed": failed, "csvResult": out.getvalue()}
    if body.get("email") or body.get("callbackUrl"):
        # the result goes by email/callback in Losant; the emulator keeps it in the job log instead
        queued = _engine.job(srv, call, "Device recipe bulk create", result={"created": created, "failed": failed})
        return _engine.reply(call.route.full_name, queued, 202)
    return _engine.reply(call.route.full_name, result, 201)


def _as_objects(call: Call, response: web.Response) -> web.Response:
    """``tagsAsObject``/``attributesAsObject`` (catalog: device recipe get/post/patch, API 1.31)
    applied to a reply already completed from its schema (which knows only the array form)."""
    if not (call.bool_q("tagsAsObject") or call.bool_q("attributesAsObject")):
        return response
    assert isinstance(response.body, bytes)
    body = json.loads(response.body)
    if isinstance(body, dict) and isinstance(body.get("items"), list):
        body["items"] = [shaped(call, i) for i in body["items"]]
    elif isinstance(body, dict):
        body = shaped(call, body)
    return json_response(body, response.status)


def _kind() -> _engine.Kind:
    return _engine.kinds()["device_recipes"]


async def recipes_get(srv: Server, call: Call) -> web.Response:
    return _as_objects(call, await _engine.collection_get(srv, call, _kind()))


async def recipes_post(srv: Server, call: Call) -> web.Response:
    return _as_objects(call, await _engine.collection_post(srv, call, _kind()))


async def recipe_get(srv: Server, call: Call) -> web.Response:
    return _as_objects(call, await _engine.item_get(srv, call, _kind()))


async def recipe_patch(srv: Server, call: Call) -> web.Response:
    return _as_objects(call, await _engine.item_patch(srv, call, _kind()))


HANDLERS: dict[str, Handler] = {
    "device_recipe.bulk_create": bulk_create,
    "device_recipes.get": recipes_get,
    "device_recipes.post": recipes_post,
    "device_recipe.get": recipe_get,
    "device_recipe.patch": recipe_patch,
}
