"""Turning an Operation and its arguments into a request description: pure, no I/O.

Everything here runs before anything is sent, so every bad argument raises a
typed ``ValidationError`` (``InvalidIdError`` for IDs) naming the parameter.
The work that does not depend on the arguments (splitting the path template,
sorting parameters by location) is done once per Operation and cached.
"""

from __future__ import annotations

import asyncio
import enum
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any
from urllib.parse import quote

import msgspec

from .._json import decoder_for, encode, to_builtins
from .._state import check_state_data, check_state_time
from .._time import to_epoch_ms
from ..errors import InvalidIdError, ValidationError
from ._operation import Operation, Param

__all__ = [
    "API_VERSION",
    "Part",
    "PreparedRequest",
    "global_query",
    "prepare",
]

API_VERSION = "1.31.0"
"""The API version the generated surface was built from (``losant_async/_spec/catalog.json``)."""


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a multipart body: a text field (``filename`` None) or a file."""

    name: str
    value: str | bytes | os.PathLike[str] | IO[bytes]
    filename: str | None = None
    content_type: str | None = None


@dataclass(slots=True)
class PreparedRequest:
    """A validated request, ready for the transport (the base URL aside); treat it as read-only."""

    method: str
    path: str
    """The URL path with every value quoted."""
    query: str
    """The encoded query string of the action's own parameters (no ``?``, maybe empty)."""
    body: bytes | None
    """A JSON body, encoded."""
    parts: tuple[Part, ...] | None
    """A multipart body."""
    headers: tuple[tuple[str, str], ...]
    """Header parameters of the action (rare)."""
    retry_safe: bool
    """Repeating it cannot duplicate a side effect (idempotent, or timestamped)."""


@dataclass(frozen=True, slots=True)
class _Plan:
    template: tuple[str, ...]
    """The path's pieces; the slots of path values hold "" until filled."""
    slots: tuple[tuple[int, int], ...]
    """(index into ``op.params``, index into ``template``) per path value."""
    locations: tuple[str, ...]
    """Each parameter's location, in ``op.params`` order."""
    device_index: int | None
    """The ``deviceId`` parameter: the key of a state report's stamps."""
    body_index: int | None
    simple: bool
    """Only required path values and at most one JSON body: ``prepare``'s short path."""
    decoders: dict[int, Any]
    """Success status -> the msgspec decoder of its declared type (types only, not None)."""
    paths: dict[Any, str]
    """Path values (one string, or a tuple of them) -> the finished path, for values that
    passed their checks; the same IDs recur on every call. Bounded (``_PATHS_MAX``)."""


def _plan_for(op: Operation) -> _Plan:
    """The plan of ``op``, made on first use and kept on the Operation itself."""
    plan: _Plan | None = op.plan
    if plan is not None:
        return plan
    index = {p.api_name: i for i, p in enumerate(op.params)}
    template: list[str] = []
    slots: list[tuple[int, int]] = []
    rest = op.path
    while "{" in rest:
        head, _, tail = rest.partition("{")
        name, _, rest = tail.partition("}")
        if head:
            template.append(head)
        if name not in index:
            raise ValidationError(f"{op.full_name}: path placeholder {{{name}}} has no parameter")
        slots.append((index[name], len(template)))
        template.append("")
    if rest:
        template.append(rest)
    locations = tuple(p.location for p in op.params)
    body_index = next((i for i, loc in enumerate(locations) if loc == "body"), None)
    simple = not op.multipart and all(
        (p.location == "path" and p.required) or (p.location == "body" and i == body_index)
        for i, p in enumerate(op.params)
    )
    plan = _Plan(
        tuple(template),
        tuple(slots),
        locations,
        index.get("deviceId"),
        body_index,
        simple,
        {status: decoder_for(tp) for status, tp in op.responses.items() if tp is not None},
        {},
    )
    object.__setattr__(op, "plan", plan)  # frozen: set once, never changed
    return plan


_GLOBAL_QUERY_CACHE: dict[tuple[bool, bool, bool], str] = {}


def global_query(actions: bool, links: bool, embedded: bool) -> str:
    """Losant's global flags as a query string (``_actions=false&_links=true&_embedded=true``)."""
    key = (actions, links, embedded)
    text = _GLOBAL_QUERY_CACHE.get(key)
    if text is None:
        text = f"_actions={_bool(actions)}&_links={_bool(links)}&_embedded={_bool(embedded)}"
        _GLOBAL_QUERY_CACHE[key] = text
    return text


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _scalar(param: Param, value: Any) -> str:
    """A scalar argument as the text the API expects (query, path, multipart field)."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = _bool(value)
    elif isinstance(value, (int, float)):
        text = repr(value) if isinstance(value, float) else str(value)
    elif isinstance(value, datetime):
        text = str(to_epoch_ms(value, what=param.py_name))
    else:
        raise ValidationError(
            f"{param.py_name} must be a string, number or boolean, not {type(value).__name__}"
        )
    if param.enum is not None and text not in param.enum:
        raise ValidationError(f"{param.py_name}={text!r} is not one of {', '.join(param.enum)}")
    regex = param.regex
    if regex is not None and regex.fullmatch(text) is None:
        raise InvalidIdError(param.py_name, value, param.pattern or "")
    return text


def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    """Bracketed keys, as qs.stringify and the Python client's flatten_params write them."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(f"{prefix}[{key}]", item, out)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _flatten(f"{prefix}[{i}]", item, out)
    elif value is None:
        return
    elif isinstance(value, bool):
        out.append((prefix, _bool(value)))
    elif isinstance(value, enum.Enum):
        out.append((prefix, str(value.value)))
    elif isinstance(value, datetime):
        out.append((prefix, str(to_epoch_ms(value, what=prefix))))
    elif isinstance(value, (str, int, float)):
        out.append((prefix, str(value)))
    else:
        raise ValidationError(
            f"{prefix} holds a {type(value).__name__}, which a query cannot carry"
        )


def _query_pairs(param: Param, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, msgspec.Struct):
        value = to_builtins(value)
    if param.serialize == "json":
        if isinstance(value, str):  # already JSON: pass it on untouched
            out.append((param.api_name, value))
        else:
            out.append((param.api_name, encode(value, what=param.py_name).decode()))
    elif param.serialize == "brackets" or isinstance(value, (Mapping, list, tuple)):
        _flatten(param.api_name, value, out)
    else:
        out.append((param.api_name, _scalar(param, value)))


def _check_body(param: Param, value: Any) -> bytes:
    if type(value) is dict:
        return encode(value, what=param.py_name)
    if isinstance(value, (str, bytes, bytearray, memoryview)) or not isinstance(
        value, (msgspec.Struct, Mapping, list, tuple)
    ):
        raise ValidationError(
            f"{param.py_name} must be a Struct, a dict or a list, not {type(value).__name__}"
        )
    if isinstance(value, Mapping) and not isinstance(value, dict):
        value = dict(value)
    return encode(value, what=param.py_name)


def _file_part(param: Param, value: Any) -> Part:
    name = param.api_name
    if isinstance(value, tuple):
        if len(value) not in (2, 3) or not isinstance(value[0], str):
            raise ValidationError(
                f"{param.py_name} must be (filename, content) or (filename, content, content_type)"
            )
        content = value[1]
        ctype = value[2] if len(value) == 3 else None
        if ctype is not None and not isinstance(ctype, str):
            raise ValidationError(f"{param.py_name}: the content type must be a string")
        if isinstance(content, (bytearray, memoryview)):
            content = bytes(content)
        if not isinstance(content, bytes) and not _is_binary_file(content):
            raise ValidationError(f"{param.py_name}: the content must be bytes or a binary file")
        return Part(name, content, value[0], ctype or "application/octet-stream")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return Part(name, bytes(value), name, "application/octet-stream")
    if isinstance(value, os.PathLike):
        return Part(name, value, os.path.basename(os.fspath(value)), "application/octet-stream")
    if _is_binary_file(value):
        filename = os.path.basename(str(getattr(value, "name", "") or name))
        return Part(name, value, filename, "application/octet-stream")
    raise ValidationError(
        f"{param.py_name} must be bytes, a path, a binary file or (filename, content), "
        f"not {type(value).__name__}"
    )


def _is_binary_file(value: Any) -> bool:
    if not callable(getattr(value, "read", None)):
        return False
    mode = getattr(value, "mode", None)
    # Text-mode files would be read as str; refuse them rather than guess an encoding.
    return not (isinstance(mode, str) and "b" not in mode)


def _text_part(param: Param, value: Any) -> Part:
    if isinstance(value, msgspec.Struct):
        value = to_builtins(value)
    if isinstance(value, (Mapping, list, tuple)):
        return Part(param.api_name, encode(value, what=param.py_name).decode())
    return Part(param.api_name, _scalar(param, value))


# IDs repeat on every call (one application, a fleet of devices): remember the ones that
# passed their pattern. Keyed by (pattern, value); bounded, cleared when full.
_checked_ids: dict[tuple[str, str], str] = {}
_CHECKED_IDS_MAX = 8192


def _path_value(param: Param, value: Any) -> str:
    """A path value, quoted; never one a URL normaliser would read as a different path."""
    regex = param._regex
    if type(value) is str and regex is not None and param.enum is None:
        # The common case, an ID: one fullmatch, and no quoting for plain ASCII letters/digits.
        pattern = param.pattern or ""
        known = _checked_ids.get((pattern, value))
        if known is not None:
            return known
        if regex.fullmatch(value) is None:
            raise InvalidIdError(param.py_name, value, pattern)
        text = value
        if text.isascii() and text.isalnum():
            if len(_checked_ids) >= _CHECKED_IDS_MAX:
                _checked_ids.clear()
            _checked_ids[(pattern, value)] = text
            return text
    else:
        text = _scalar(param, value)
    if text in ("", ".", "..") or "/" in text:
        raise ValidationError(
            f"{param.py_name}={text!r} cannot be a path segment (empty, '.', '..' or holding '/')"
        )
    try:
        return quote(text, safe="")
    except UnicodeEncodeError:
        raise ValidationError(f"{param.py_name} is not valid Unicode (a lone surrogate)") from None


Stamp = Callable[[str], int]
"""Gives the next distinct epoch millisecond for a device ID (``losant_async._state.KeyedStamper``)."""

_NO_TIME = (None, msgspec.UNSET)


def _one_state(state: Any, what: str, stamp: Stamp | None, key: str) -> tuple[Any, bool]:
    """Check one state exactly as MQTT does; stamp it when it has no time. (state, timed)."""
    if type(state) is dict or isinstance(state, Mapping):
        if "data" not in state:
            raise ValidationError(f"{what} has no 'data': a state is {{'data': {{...}}, 'time': ...}}")
        check_state_data(state["data"])
        when = state.get("time")
        if when is None:
            if stamp is None:
                return state, False
            return {**state, "time": stamp(key)}, True
        check_state_time(when, what=f"{what} time")
        return state, True
    if isinstance(state, msgspec.Struct) and hasattr(state, "data"):
        data = state.data
        if data is msgspec.UNSET or data is None:
            raise ValidationError(f"{what} has no data")
        check_state_data(data)
        when = getattr(state, "time", None)
        if when in _NO_TIME:
            if stamp is None or not hasattr(state, "time"):
                return state, False
            return msgspec.structs.replace(state, time=stamp(key)), True
        check_state_time(to_builtins(when) if isinstance(when, msgspec.Struct) else when,
                         what=f"{what} time")
        return state, True
    raise ValidationError(
        f"{what} must be a state ({{'data': {{...}}}} or a DeviceState), not {type(state).__name__}"
    )


def _states(param: Param, value: Any, stamp: Stamp | None, key: str) -> tuple[Any, bool]:
    """Every state of a state report checked, and stamped when it lacks a time; (value, all timed)."""
    if type(value) is dict:
        return _one_state(value, param.py_name, stamp, key)
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValidationError(f"{param.py_name} is an empty list: give at least one state")
        out = []
        all_timed = True
        for i, state in enumerate(value):
            checked, timed = _one_state(state, f"{param.py_name}[{i}]", stamp, key)
            out.append(checked)
            all_timed = all_timed and timed
        return out, all_timed
    return _one_state(value, param.py_name, stamp, key)


def prepare(op: Operation, args: tuple[Any, ...], *, stamp: Stamp | None = None) -> PreparedRequest:
    """Validate ``args`` (in ``op.params`` order) and encode them where the API wants them.

    For a state report (``op.timestamped_body``) every state is checked as
    MQTT checks it, and with ``stamp`` each state without a ``time`` gets the
    next distinct millisecond of its device first: Losant keeps one state per
    millisecond, and a retry then overwrites instead of duplicating.
    """
    params = op.params
    if len(args) != len(params):
        raise ValidationError(f"{op.full_name} takes {len(params)} arguments, got {len(args)}")
    plan = op.plan or _plan_for(op)
    if plan.simple:
        return _prepare_simple(op, plan, args, stamp)
    query: list[tuple[str, str]] | None = None
    headers: list[tuple[str, str]] | None = None
    parts: list[Part] | None = [] if op.multipart else None
    body: bytes | None = None
    retry_safe = op.idempotent
    path_parts: list[str] | None = None
    unset = msgspec.UNSET
    for i, location in enumerate(plan.locations):
        value = args[i]
        if value is None or value is unset:
            param = params[i]
            if param.required:
                raise ValidationError(f"{op.full_name}: {param.py_name} is required")
            continue
        if location == "path":
            continue  # filled below, in path order
        param = params[i]
        if location == "body":
            if op.timestamped_body:
                key = args[plan.device_index] if plan.device_index is not None else ""
                value, all_timed = _states(
                    param, value, stamp, key if isinstance(key, str) else ""
                )
                retry_safe = retry_safe or all_timed
            body = _check_body(param, value)
        elif location == "query":
            if query is None:
                query = []
            _query_pairs(param, value, query)
        elif location == "multipart":
            if parts is None:
                parts = []
            parts.append(
                _file_part(param, value) if param.kind == "file" else _text_part(param, value)
            )
        elif location == "header":
            if headers is None:
                headers = []
            headers.append((param.api_name, _scalar(param, value)))
    if plan.slots:
        path_parts = list(plan.template)
        for param_index, slot in plan.slots:
            value = args[param_index]
            if value is None or value is unset:  # an optional path value cannot be left out
                raise ValidationError(f"{op.full_name}: {params[param_index].py_name} is required")
            path_parts[slot] = _path_value(params[param_index], value)
        path = "".join(path_parts)
    else:
        path = "".join(plan.template)
    query_text = ""
    if query:
        try:
            query_text = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query)
        except UnicodeEncodeError:
            raise ValidationError(
                f"{op.full_name}: a query value is not valid Unicode (a lone surrogate)"
            ) from None
    return PreparedRequest(
        op.method,
        path,
        query_text,
        body,
        tuple(parts) if parts is not None else None,
        tuple(headers) if headers else (),
        retry_safe,
    )


_PATHS_MAX = 4096
_encode = msgspec.json.Encoder().encode


def _simple_path(op: Operation, plan: _Plan, args: tuple[Any, ...]) -> str:
    """The path of a simple plan: from ``plan.paths`` when these IDs were seen, else built and checked."""
    slots = plan.slots
    key: Any
    if len(slots) == 2:  # the most common shape: an application ID and one more
        key = (args[slots[0][0]], args[slots[1][0]])
    elif len(slots) == 1:
        key = args[slots[0][0]]
    else:
        key = tuple(args[i] for i, _ in slots)
    paths = plan.paths
    try:
        path = paths.get(key)
    except TypeError:  # an unhashable value: the checks below say what is wrong with it
        path = None
        key = None
    if path is not None:
        return path
    params = op.params
    unset = msgspec.UNSET
    path_parts = list(plan.template)
    for param_index, slot in slots:
        value = args[param_index]
        if value is None or value is unset:
            raise ValidationError(f"{op.full_name}: {params[param_index].py_name} is required")
        path_parts[slot] = _path_value(params[param_index], value)
    path = "".join(path_parts)
    # Only plain strings are remembered: 1 and True hash alike, and an Enum may change its text.
    if key is not None and all(type(args[i]) is str for i, _ in slots):
        if len(paths) >= _PATHS_MAX:
            paths.clear()
        paths[key] = path
    return path


def _prepare_simple(
    op: Operation, plan: _Plan, args: tuple[Any, ...], stamp: Stamp | None
) -> PreparedRequest:
    """``prepare`` for the usual shape (IDs in the path, maybe a JSON body): no generic loop."""
    params = op.params
    unset = msgspec.UNSET
    path = _simple_path(op, plan, args) if plan.slots else "".join(plan.template)
    body: bytes | None = None
    retry_safe = op.idempotent
    body_index = plan.body_index
    if body_index is not None:
        param = params[body_index]
        value = args[body_index]
        if value is None or value is unset:
            if param.required:
                raise ValidationError(f"{op.full_name}: {param.py_name} is required")
        else:
            if op.timestamped_body:
                key = args[plan.device_index] if plan.device_index is not None else ""
                key = key if type(key) is str else ""
                if type(value) is dict and type(value.get("data")) is dict:
                    # One state as a dict, the usual call: checked and stamped without detours.
                    check_state_data(value["data"])
                    when = value.get("time")
                    if when is None:
                        if stamp is not None:
                            value = {**value, "time": stamp(key)}
                            retry_safe = True
                    else:
                        check_state_time(when, what=f"{param.py_name} time")
                        retry_safe = True
                else:
                    value, all_timed = _states(param, value, stamp, key)
                    retry_safe = retry_safe or all_timed
            if type(value) is dict:
                try:
                    body = _encode(value)
                except (TypeError, ValueError, OverflowError, msgspec.EncodeError):
                    body = encode(value, what=param.py_name)  # raises, naming the parameter
            else:
                body = _check_body(param, value)
    return PreparedRequest(op.method, path, "", body, None, (), retry_safe)


async def load_files(parts: tuple[Part, ...]) -> tuple[Part, ...]:
    """File parts with their content read into memory, in a worker thread.

    Reading once up front means a retry sends the same bytes, the caller's file
    objects are never closed or moved under them by the HTTP library, and the
    event loop never blocks on the disk.
    """
    if all(isinstance(p.value, (str, bytes)) for p in parts):
        return parts
    return await asyncio.to_thread(_read_parts, parts)


def _read_parts(parts: tuple[Part, ...]) -> tuple[Part, ...]:
    loaded: list[Part] = []
    for part in parts:
        value = part.value
        if isinstance(value, os.PathLike):
            try:
                with open(value, "rb") as file:
                    value = file.read()
            except OSError as exc:
                raise ValidationError(
                    f"{part.name}: cannot read {os.fspath(value)!r}: {exc.strerror}"
                ) from None
        elif not isinstance(value, (str, bytes)):
            data = value.read()
            if not isinstance(data, bytes):
                raise ValidationError(
                    f"{part.name}: the file gave {type(data).__name__}, not bytes"
                )
            value = data
        loaded.append(Part(part.name, value, part.filename, part.content_type))
    return tuple(loaded)
