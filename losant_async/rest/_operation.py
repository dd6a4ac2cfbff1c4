"""The description of one API action that generated code hands to the handwritten core.

Generated resource methods are thin: each builds nothing itself, it passes its
``Operation`` and its arguments (in ``Operation.params`` order) to
``Resource._call`` / ``_paginate`` / ``_stream``. Everything else (validation,
encoding, transport, retries, decoding) lives once in the core.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import IO, Any, Literal

__all__ = ["FileInput", "Operation", "Param", "ParamLocation", "Serialize", "UploadSource"]

FileInput = (
    bytes
    | bytearray
    | memoryview
    | os.PathLike[str]
    | IO[bytes]
    | tuple[str, bytes | IO[bytes]]
    | tuple[str, bytes | IO[bytes], str]
)
"""What a multipart file parameter accepts: bytes, a path, a binary file object,
or ``(filename, content)`` / ``(filename, content, content_type)``."""

UploadSource = bytes | bytearray | memoryview | str | os.PathLike[str]
"""What a one-call upload takes: the content itself, or the path of a file (``str`` is a path)."""

ParamLocation = Literal["path", "query", "body", "multipart", "header"]
Serialize = Literal["json", "brackets"]


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter of an action, as the catalog describes it."""

    api_name: str
    """The name on the wire (camelCase, as the API spells it)."""
    py_name: str
    """The keyword argument's name (snake_case)."""
    location: ParamLocation
    kind: str
    """The catalog's type: string, boolean, hash, array, file or undefined."""
    required: bool
    pattern: str | None = None
    serialize: Serialize | None = None
    """For object-valued query parameters: one JSON string, or bracketed keys."""
    enum: tuple[str, ...] | None = None
    _regex: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.pattern is not None:
            # ASCII: the catalog's \d means 0-9, not every Unicode digit. Values are checked
            # with fullmatch, so a trailing newline cannot slip past the pattern's "$".
            object.__setattr__(self, "_regex", re.compile(self.pattern, re.ASCII))

    @property
    def regex(self) -> re.Pattern[str] | None:
        return self._regex


@dataclass(frozen=True, slots=True)
class Operation:
    """One action: where it goes, what it takes, what it answers."""

    resource: str
    """The resource's catalog name (``device``)."""
    action: str
    """The action's catalog name (``send_state``)."""
    method: str
    path: str
    """The path template, with ``{apiName}`` placeholders."""
    params: tuple[Param, ...]
    responses: dict[int, Any]
    """Success status -> the type to decode into (``None``: no body expected)."""
    auth_required: bool = True
    scopes: tuple[str, ...] = ()
    idempotent: bool = False
    """Safe to repeat after the server may have applied it (GET, PUT...)."""
    timestamped_body: bool = False
    """A state report: idempotent once every state carries its own time."""
    multipart: bool = False
    sse_events: dict[str, Any] | None = None
    """For server-sent-event actions: event name -> type of its JSON data."""
    page_item: Any = None
    """For paginated actions: the type of one element of the response's ``items``."""
    plan: Any = field(default=None, init=False, repr=False, compare=False)
    """The request builder's per-action work, done once on first use (``_request``)."""

    @property
    def full_name(self) -> str:
        return f"{self.resource}.{self.action}"
