"""Emulated ``device_attributes`` and ``device_attribute`` resources."""

from __future__ import annotations

from aiohttp import web

from ...errors import ValidationError
from ..store import AttributeRecord, DeviceRecord
from ._common import Call, Handler, HttpError, Server, json_response


def _attribute(srv: Server, call: Call) -> tuple[DeviceRecord, AttributeRecord]:
    device = srv.device_of(call)
    attr = device.attributes.get(call.params["name"])
    if attr is None:
        raise HttpError(404, "NotFound", "Device attribute was not found")
    return device, attr


async def attributes_get(srv: Server, call: Call) -> web.Response:
    device = srv.device_of(call)
    items = [srv.attr_json(a, device) for a in device.attributes.values()]
    items = srv.filter_items(call, items, "name")
    field, direction = srv.sort(call, items, "name")
    return json_response(
        {
            "items": items,
            "count": len(items),
            "totalCount": len(items),
            "sortField": field,
            "sortDirection": direction,
            "applicationId": device.application_id,
            "deviceId": device.id,
        }
    )


async def attributes_post(srv: Server, call: Call) -> web.Response:
    device = srv.device_of(call)
    attr = srv.store.parse_attribute(srv.body_of(call))
    if attr.name in device.attributes:
        raise ValidationError(f"attribute {attr.name} already exists")
    device.attributes[attr.name] = attr
    device.updated = srv.store.clock()
    return json_response(srv.attr_json(attr, device), 201)


async def attribute_get(srv: Server, call: Call) -> web.Response:
    device, attr = _attribute(srv, call)
    return json_response(srv.attr_json(attr, device))


async def attribute_patch(srv: Server, call: Call) -> web.Response:
    device, attr = _attribute(srv, call)
    body = srv.body_of(call)
    if "dataType" in body:
        raise ValidationError("an attribute's dataType cannot be changed")
    if "description" in body:
        attr.description = str(body["description"])
    if "contentType" in body:
        attr.content_type = body["contentType"]
    if isinstance(body.get("attributeTags"), dict):
        attr.attribute_tags = dict(body["attributeTags"])
    if "name" in body and body["name"] != attr.name:
        renamed = srv.store.parse_attribute({"name": body["name"], "dataType": attr.data_type})
        del device.attributes[attr.name]
        attr.name = renamed.name
        device.attributes[attr.name] = attr
    device.updated = srv.store.clock()
    return json_response(srv.attr_json(attr, device))


async def attribute_delete(srv: Server, call: Call) -> web.Response:
    device, attr = _attribute(srv, call)
    del device.attributes[attr.name]
    return json_response({"success": True})


HANDLERS: dict[str, Handler] = {
    "device_attributes.get": attributes_get,
    "device_attributes.post": attributes_post,
    "device_attribute.get": attribute_get,
    "device_attribute.patch": attribute_patch,
    "device_attribute.delete": attribute_delete,
}
