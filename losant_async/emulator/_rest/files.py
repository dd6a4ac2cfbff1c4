"""Emulated files and private files: two-step or multipart upload, listing, moving, and every emulator download.

The upload target (``<rest_url>/_emulator/uploads/<id>``) and the downloads
(``<rest_url>/_emulator/blobs/<id>``, exports too) are served by the REST server itself.
"""

from __future__ import annotations

import copy
import hashlib
import re
import urllib.parse
from typing import Any

from aiohttp import BodyPartReader, web

from ...errors import ValidationError
from ..store import BlobRecord
from . import _engine
from ._common import Call, Handler, HttpError, Server, iso

_UPLOADS = "/_emulator/uploads/"
_BLOBS = "/_emulator/blobs/"
MAX_UPLOAD_BYTES = 256 * 1024 * 1024
"""The largest file the upload target takes (the emulator keeps files in memory)."""


def _kind(call: Call) -> _engine.Kind:
    return _engine.kinds()["private_files" if call.route.resource.startswith("private_file") else "files"]


def _author(call: Call) -> dict[str, Any]:
    token = call.token
    if token is None:
        return {}
    if token.kind == "user" and token.user_id:
        return {"authorType": "user", "authorId": token.user_id}
    if token.kind == "device" and token.device_id:
        return {"authorType": "device", "authorId": token.device_id}
    return {"authorType": "apiToken", "authorId": token.id}


def _store_bytes(srv: Server, doc: dict[str, Any], data: bytes, content_type: str | None) -> None:
    kind = content_type or doc.get("contentType") or "application/octet-stream"
    srv.store.blobs[doc["id"]] = BlobRecord(doc.get("name", "file"), kind, data)
    doc.update(
        {
            "status": "completed",
            "fileSize": len(data),
            "contentType": kind,
            "s3etag": hashlib.md5(data, usedforsecurity=False).hexdigest(),
            "url": f"{srv.base_url}{_BLOBS}{doc['id']}",
            "lastUpdated": iso(srv.store.clock()),
        }
    )


def _with_upload(srv: Server, doc: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    if doc.get("type") == "file" and doc.get("status") == "pending":
        # S3-style: POST these fields plus a "file" part as multipart/form-data to the url
        out["upload"] = {"url": f"{srv.base_url}{_UPLOADS}{doc['id']}", "fields": {"key": doc["id"], "bucket": "emulator"}}
    return out


async def files_post(srv: Server, call: Call) -> web.Response:
    """Step one of an upload: the file's metadata; the reply's ``upload`` says where the bytes go."""
    body = _engine.check_body(call)
    if not isinstance(body, dict):
        raise ValidationError("a file is a JSON object with name and type")
    directory = body.get("parentDirectory") or "/"
    fields = {**body, "parentDirectory": directory, **_author(call)}
    fields["status"] = "pending" if body.get("type") == "file" else "completed"
    doc = _engine.new_doc(srv.store, _kind(call), call.params, fields)
    return _engine.reply(call.route.full_name, _with_upload(srv, doc))


async def files_get(srv: Server, call: Call) -> web.Response:
    items = _engine.scoped(srv, _kind(call), call.params)
    for name, field in (("type", "type"), ("status", "status"), ("directory", "parentDirectory")):
        wanted = call.q(name)
        if wanted:
            items = [i for i in items if i.get(field) == wanted]
    page = _engine.list_page(call, [copy.deepcopy(i) for i in items], default_sort="lastUpdated")
    return _engine.reply(call.route.full_name, page)


async def file_upload(srv: Server, call: Call) -> web.Response:
    """The bytes in one multipart request (``file`` or ``privateFile`` part)."""
    doc = _engine.require(srv, _kind(call), call.params)
    parts = call.body if isinstance(call.body, dict) else {}
    part = parts.get("file") or parts.get("privateFile")
    if not isinstance(part, dict):
        raise ValidationError("file: a multipart file part is required")
    _store_bytes(srv, doc, part["data"], part.get("content_type"))
    return _engine.reply(call.route.full_name, copy.deepcopy(doc))


async def file_patch(srv: Server, call: Call) -> web.Response:
    """New metadata; a changed size or type means new bytes: the file is pending an upload again."""
    doc = _engine.require(srv, _kind(call), call.params)
    body = _engine.check_body(call)
    if not isinstance(body, dict):
        raise ValidationError("a file patch is a JSON object")
    doc.update(copy.deepcopy(body))
    if doc.get("type") == "file" and ("fileSize" in body or "contentType" in body):
        doc["status"] = "pending"
    doc["lastUpdated"] = iso(srv.store.clock())
    return _engine.reply(call.route.full_name, _with_upload(srv, doc))


async def file_move(srv: Server, call: Call) -> web.Response:
    doc = _engine.require(srv, _kind(call), call.params)
    name, directory = call.q("name"), call.q("parentDirectory")
    if not name and not directory:
        raise ValidationError("give name or parentDirectory")
    if name:
        doc["name"] = name
    if directory:
        doc["parentDirectory"] = directory
    doc["lastUpdated"] = iso(srv.store.clock())
    return _engine.reply(call.route.full_name, copy.deepcopy(doc))


async def file_delete(srv: Server, call: Call) -> web.Response:
    doc = _engine.require(srv, _kind(call), call.params)
    _engine.remove_doc(srv, _kind(call), doc)
    srv.store.blobs.pop(doc["id"], None)
    return _engine.reply(call.route.full_name, {"success": True})


async def upload_target(srv: Server, request: web.Request) -> web.StreamResponse:
    """Where ``files.post``'s ``upload`` points: a multipart POST with the fields and a ``file`` part."""
    file_id = request.path[len(_UPLOADS) :].strip("/")
    doc = srv.store.docs.get("files", {}).get(file_id) or srv.store.docs.get("private_files", {}).get(file_id)
    if doc is None:
        raise HttpError(404, "NotFound", "No upload is pending for this file")
    if request.method != "POST" or not request.content_type.startswith("multipart/"):
        raise HttpError(400, "Validation", "POST multipart/form-data with a file part")
    # Read part by part (not request.post(): its cap is the API's 4 MiB body limit, and an
    # upload is as large as the file); S3 takes the form fields first and the file last.
    reader = await request.multipart()
    fields: dict[str, str] = {}
    data: bytearray | None = None
    content_type: str | None = None
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise HttpError(400, "Validation", "a nested multipart body is not an upload")
        if part.name != "file":
            fields[part.name or ""] = (await part.read(decode=False))[:1024].decode("utf-8", "replace")
            continue
        data, content_type = bytearray(), part.headers.get("Content-Type")
        while chunk := await part.read_chunk(256 * 1024):
            data += chunk
            if len(data) > MAX_UPLOAD_BYTES:
                raise HttpError(400, "EntityTooLarge", f"an upload is at most {MAX_UPLOAD_BYTES} bytes")
        break
    if data is None:
        raise HttpError(400, "Validation", "file: a multipart file part is required")
    if fields.get("key") not in (None, file_id):
        raise HttpError(400, "Validation", "key: does not match this upload")
    _store_bytes(srv, doc, bytes(data), content_type)
    return web.Response(status=204)


async def download(srv: Server, request: web.Request) -> web.StreamResponse:
    blob = srv.store.blobs.get(request.path[len(_BLOBS) :].strip("/"))
    if blob is None or request.method not in ("GET", "HEAD"):
        raise HttpError(404, "NotFound", "No such file")
    return web.Response(
        body=blob.data,
        content_type=safe_content_type(blob.content_type),
        headers={"Content-Disposition": content_disposition(blob.name)},
    )


_MEDIA_TYPE = re.compile(r"^[A-Za-z0-9!#$&^_.+-]{1,127}/[A-Za-z0-9!#$&^_.+-]{1,127}$")


def safe_content_type(stored: str) -> str:
    """The stored media type when it is one (``type/subtype``), else ``application/octet-stream``."""
    media = stored.split(";")[0].strip()
    return media if _MEDIA_TYPE.match(media) else "application/octet-stream"


def content_disposition(name: str) -> str:
    """``attachment`` with the name as RFC 6266 has it: an ASCII ``filename`` with every quote,
    backslash, control and non-ASCII character replaced, and the exact name in ``filename*``
    (RFC 5987 UTF-8, percent-encoded), so no stored name can add a parameter or a header."""
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in name) or "file"
    exact = urllib.parse.quote(name, safe="!#$&+-.^_`|~")
    return f'attachment; filename="{fallback}"; filename*=UTF-8\'\'{exact}'


EXTRA_ROUTES = ((_UPLOADS, upload_target), (_BLOBS, download))

HANDLERS: dict[str, Handler] = {}
for _prefix in ("files", "private_files"):
    _one = _prefix[:-1]
    HANDLERS.update(
        {
            f"{_prefix}.post": files_post,
            f"{_prefix}.get": files_get,
            f"{_one}.upload": file_upload,
            f"{_one}.patch": file_patch,
            f"{_one}.move": file_move,
            f"{_one}.delete": file_delete,
        }
    )
