"""One-call uploads for Losant's two-step files: create the file, stream its bytes to the upload target, return it completed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
import os
import time
from collections.abc import Mapping
from typing import IO, Any

from ..errors import DecodeError, RequestTimeoutError, ValidationError, error_for_status
from ._operation import Operation, UploadSource
from ._request import Part
from .options import RequestOptions, Timeout
from .transport import HTTPRequest, Transport

__all__ = ["UPLOAD_TIMEOUT", "upload_two_step"]

_log = logging.getLogger("losant_async.rest")

UPLOAD_TIMEOUT = Timeout(total=None, connect=10.0, read=120.0)
"""The upload's own timeout: no total (a large file takes as long as the link needs), but the
target must accept the connection within 10 s and answer within 120 s of the last byte."""

_POLL_FIRST, _POLL_MAX = 0.1, 2.0


def _args(op: Operation, values: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(values.get(p.api_name) for p in op.params)


def _size_of(source: UploadSource) -> tuple[int, str | None]:
    """The content's size and, for a path, the file name it suggests."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return memoryview(source).nbytes, None
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        try:
            info = os.stat(path)
        except OSError as exc:
            raise ValidationError(f"upload: cannot read {path!r}: {exc.strerror}") from None
        if not os.path.isfile(path):
            raise ValidationError(f"upload: {path!r} is not a file")
        return info.st_size, os.path.basename(path)
    raise ValidationError(f"upload: give bytes or a path, not {type(source).__name__}")


def _open(path: str) -> IO[bytes]:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise ValidationError(f"upload: cannot read {path!r}: {exc.strerror}") from None


def _field(reply: Any, name: str) -> Any:
    return reply.get(name) if isinstance(reply, dict) else getattr(reply, name, None)


async def upload_two_step(
    requester: Any,
    create: Operation,
    get: Operation,
    source: UploadSource,
    *,
    application_id: str,
    name: str | None,
    parent_directory: str | None,
    content_type: str | None,
    wait: float,
    options: RequestOptions | None,
    file_id: str | None = None,
) -> Any:
    """Create the file (``create``), POST its bytes to the reply's ``upload`` target, then ``get`` it until completed.

    With ``file_id``, ``create`` is the file's ``patch`` instead: its new size and
    type, then its new content (``file.replace``). A path is streamed from disk in
    chunks (aiohttp reads it in a worker thread), never read whole. The upload
    target (S3 on Losant) gets no Losant token. Raises ``RequestTimeoutError`` when
    Losant still reports the file pending ``wait`` seconds after the upload.
    """
    transport: Transport | None = getattr(requester, "transport", None)
    if transport is None:
        raise TypeError("uploads need a LosantClient (the requester has no transport)")
    size, suggested = _size_of(source)
    name = name or suggested
    if not name and file_id is None:
        raise ValidationError("upload: name= is required for bytes")
    kind = content_type or (mimetypes.guess_type(name)[0] if name else None) or "application/octet-stream"
    body: dict[str, Any] = {"fileSize": size, "contentType": kind}
    if file_id is None:
        body.update({"name": name, "type": "file"})
    if parent_directory is not None:
        body["parentDirectory"] = parent_directory
    values: dict[str, Any] = {"applicationId": application_id}
    values[next(p.api_name for p in create.params if p.location == "body")] = body
    id_param = next(p.api_name for p in get.params if p.location == "path" and p.api_name != "applicationId")
    if file_id is not None:
        values[id_param] = file_id
    created = await requester.request(create, _args(create, values), raw=True, options=options)
    upload = created.get("upload") if isinstance(created, dict) else None
    url, fields = _field(upload, "url"), _field(upload, "fields")
    file_id = created.get("id") if isinstance(created, dict) else None
    if not isinstance(url, str) or not isinstance(fields, dict) or not isinstance(file_id, str):
        raise DecodeError(f"{create.full_name}: the reply has no upload target (upload.url, upload.fields)")
    name = name or str(created.get("name") or "file")
    await _post_form(transport, url, fields, source, name, kind)
    get_args = _args(get, {"applicationId": application_id, id_param: file_id})
    deadline = time.monotonic() + wait
    delay = _POLL_FIRST
    while True:
        # Losant marks the file completed once its storage reports the upload: shortly after.
        file = await requester.request(get, get_args, raw=False, options=options)
        if _field(file, "status") != "pending":
            return file
        left = deadline - time.monotonic()
        if left <= 0:
            raise RequestTimeoutError(
                f"{create.full_name}: {name!r} was uploaded, but Losant still reports it pending after {wait:g} s"
            )
        await asyncio.sleep(min(delay, left))
        delay = min(delay * 2, _POLL_MAX)


async def _post_form(
    transport: Transport, url: str, fields: Mapping[str, Any], source: UploadSource, name: str, kind: str
) -> None:
    """The presigned POST: every ``fields`` entry, then the content as the part named ``file`` (last, as S3 wants)."""
    parts = [Part(str(k), str(v)) for k, v in fields.items()]
    with contextlib.ExitStack() as stack:
        content: bytes | IO[bytes]
        if isinstance(source, (str, os.PathLike)):
            # aiohttp reads an open file in chunks, in a worker thread: it is never in memory whole.
            content = stack.enter_context(await asyncio.to_thread(_open, os.fspath(source)))
        else:
            content = bytes(source) if not isinstance(source, bytes) else source
        parts.append(Part("file", content, filename=name, content_type=kind))
        # No Authorization header: the target is not Losant, and the fields carry its permission.
        request = HTTPRequest("POST", url, {}, None, tuple(parts), UPLOAD_TIMEOUT)
        resp = await transport.send(request)
    if resp.status >= 300:
        text = resp.body[:512].decode("utf-8", "replace")
        _log.warning("upload of %r refused by its target: HTTP %d", name, resp.status)
        raise error_for_status(resp.status)(resp.status, None, f"the upload target refused the file: {text}", text)
