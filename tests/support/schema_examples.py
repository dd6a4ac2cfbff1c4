"""Deterministic, realistic example payloads built from the vendored JSON Schemas and catalog.

``example_for_schema("device")`` gives a full device object (every declared
property, arrays of two items, IDs that match their patterns, enum values from
the schema); ``example_for_param(param, op)`` gives a value for one catalog
parameter. The same input always gives the same output, so tests built on it
are reproducible without seeding anything.

Choices worth knowing:

- ``oneOf``/``anyOf`` use their first member that is not ``null`` (a ``null``
  first member would hide the object the schema is really about); the
  parent's own keywords are merged in, so constraint-only members work.
- ``$ref`` (``#/definitions/<name>`` means ``spec/schemas/<name>.json``) is
  followed up to ``ref_depth`` levels; past that, optional references are
  left out and arrays of them are empty.
- The collection schemas whose ``items`` refer to themselves
  (``instanceAuditLogs``, ``instanceOrgMembers``: an upstream slip) get items
  of the single-item schema, which is what the server sends.
- Definitions listed in ``spec/schemas/MISSING.txt`` have no schema: their
  example is ``{}``.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from losant_async.rest._operation import Operation, Param

__all__ = [
    "REPO_ROOT",
    "SPEC_DIR",
    "catalog",
    "catalog_param",
    "example_for_param",
    "example_for_schema",
    "missing_schemas",
    "schema",
    "schema_names",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
SPEC_DIR = REPO_ROOT / "losant_async" / "_spec"
SCHEMA_DIR = SPEC_DIR / "schemas"

_REF_PREFIX = "#/definitions/"
_DATE_TIME = "2026-01-02T03:04:05.678Z"
_FILE_BYTES = b"example file content\n"

# Values tried, in order, for a string with a pattern; the first that matches wins.
_PATTERN_CANDIDATES = (
    "temperature",
    "my-slug",
    "my-file.txt",
    "1.2.3",
    "{{data.value}}",
    "data:image/png;base64,iVBORw0KGgo=",
    "Str0ng!Passw0rd#",
    "token_1",
    "example",
    "a",
)
_KEY_CANDIDATES = ("temperature", "humidity", "key_a", "key_b", "1", "2")


@functools.cache
def catalog() -> dict[str, Any]:
    """The parsed ``spec/catalog.json``."""
    with (SPEC_DIR / "catalog.json").open(encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


@functools.cache
def missing_schemas() -> frozenset[str]:
    """Definition names the catalog uses but the spec does not ship."""
    text = (SCHEMA_DIR / "MISSING.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


@functools.cache
def schema_names() -> tuple[str, ...]:
    """Every shipped schema name, sorted."""
    return tuple(sorted(p.stem for p in SCHEMA_DIR.glob("*.json")))


@functools.cache
def _load(name: str) -> dict[str, Any]:
    with (SCHEMA_DIR / f"{name}.json").open(encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def schema(name: str) -> dict[str, Any]:
    """A copy of schema ``name`` (callers may mutate it)."""
    return copy.deepcopy(_load(name))


class _Ctx:
    """Per-call state: a counter so generated IDs and keys differ, and the $ref depth."""

    __slots__ = ("counter", "include_optional", "ref_depth", "ref_limit")

    def __init__(self, include_optional: bool, ref_limit: int) -> None:
        self.counter = 0
        self.ref_depth = 0
        self.ref_limit = ref_limit
        self.include_optional = include_optional

    def next(self) -> int:
        self.counter += 1
        return self.counter


def example_for_schema(name: str, *, include_optional: bool = True, ref_depth: int = 2) -> Any:
    """A realistic payload for schema ``name``.

    ``include_optional=False`` gives only the required properties.
    """
    if name in missing_schemas():
        return {}
    if name not in schema_names():
        raise KeyError(f"no schema named {name!r} in {SCHEMA_DIR}")
    ctx = _Ctx(include_optional, ref_depth)
    return _gen(_load(name), ctx, owner=name)


def _ref_name(s: Mapping[str, Any]) -> str | None:
    ref = s.get("$ref")
    if isinstance(ref, str) and ref.startswith(_REF_PREFIX):
        return ref[len(_REF_PREFIX) :]
    return None


def _is_deep_ref(s: Mapping[str, Any], ctx: _Ctx) -> bool:
    """Whether following ``s`` (a $ref, or an array of them) would pass the depth limit."""
    target = s.get("items") if s.get("type") == "array" else s
    return (
        isinstance(target, Mapping)
        and _ref_name(target) is not None
        and ctx.ref_depth >= ctx.ref_limit
    )


def _merged(parent: Mapping[str, Any], member: Any) -> dict[str, Any]:
    out = {k: v for k, v in parent.items() if k not in ("oneOf", "anyOf", "allOf")}
    if isinstance(member, list):  # a malformed schema wraps a member in a list
        member = member[0] if member else {}
    if not isinstance(member, Mapping):
        return out
    for k, v in member.items():
        if k == "properties" and isinstance(out.get("properties"), Mapping):
            out["properties"] = {**out["properties"], **v}
        elif k == "required" and isinstance(out.get("required"), list):
            out["required"] = [*out["required"], *v]
        else:
            out[k] = v
    return out


def _first_member(members: list[Any]) -> Any:
    for m in members:
        if isinstance(m, Mapping) and m.get("type") == "null":
            continue
        return m
    return members[0] if members else {}


def _gen(s: Any, ctx: _Ctx, owner: str) -> Any:
    if not isinstance(s, Mapping):
        return "example"
    ref = _ref_name(s)
    if ref is not None:
        if ref == owner and ref.endswith("s") and (ref[:-1]) in schema_names():
            ref = ref[:-1]  # the self-referencing collections: items are single items
        if ref in missing_schemas():
            return {}
        ctx.ref_depth += 1
        try:
            return _gen(_load(ref), ctx, owner=ref)
        finally:
            ctx.ref_depth -= 1
    if "allOf" in s:
        merged: dict[str, Any] = {k: v for k, v in s.items() if k != "allOf"}
        for member in s["allOf"]:
            merged = _merged(merged, member)
        return _gen(merged, ctx, owner)
    for key in ("oneOf", "anyOf"):
        if key in s:
            chosen = _first_member(s[key])
            merged = _merged(s, chosen)
            if key == "oneOf" and isinstance(merged.get("properties"), Mapping):
                # Constraint-only members (``{required: [...]}``): leave out what only
                # the other members require, so exactly one member matches.
                mine = set(chosen.get("required") or ()) if isinstance(chosen, Mapping) else set()
                others = {
                    r
                    for m in s[key]
                    if m is not chosen and isinstance(m, Mapping)
                    for r in m.get("required") or ()
                }
                drop = others - mine - set(s.get("required") or ())
                merged["properties"] = {
                    k: v for k, v in merged["properties"].items() if k not in drop
                }
            return _gen(merged, ctx, owner)
    if s.get("enum"):
        return s["enum"][0]
    if "const" in s:
        return s["const"]
    t = s.get("type")
    if isinstance(t, list):
        non_null = [x for x in t if x != "null"]
        t = non_null[0] if non_null else "null"
    if t is None:
        if "properties" in s or "patternProperties" in s:
            t = "object"
        elif "items" in s:
            t = "array"
        else:
            return "example"
    if t == "object":
        return _object(s, ctx, owner)
    if t == "array":
        return _array(s, ctx, owner)
    if t == "string":
        return _string(s, ctx)
    if t == "integer":
        return int(_clamp(s, 42))
    if t == "number":
        return _clamp(s, 42.5)
    if t == "boolean":
        return True
    if t == "null":
        return None
    return "example"


def _clamp(s: Mapping[str, Any], value: float) -> float:
    lo = s.get("minimum")
    hi = s.get("maximum")
    if isinstance(lo, (int, float)) and value < lo:
        value = lo
    if isinstance(hi, (int, float)) and value > hi:
        value = hi
    return value


def _object(s: Mapping[str, Any], ctx: _Ctx, owner: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    required = set(s.get("required") or ())
    props = s.get("properties")
    if isinstance(props, Mapping):
        for key, sub in props.items():
            if key not in required:
                if not ctx.include_optional:
                    continue
                if isinstance(sub, Mapping) and _is_deep_ref(sub, ctx):
                    continue
            out[key] = _gen(sub, ctx, owner)
        if not ctx.include_optional or not s.get("patternProperties"):
            return out
    limit = s.get("maxProperties")
    wanted = 1 if not isinstance(limit, int) else min(1, limit)
    pattern_props = s.get("patternProperties")
    if isinstance(pattern_props, Mapping) and pattern_props:
        pattern, sub = next(iter(pattern_props.items()))
        added = 0
        for key in _KEY_CANDIDATES:
            if added >= wanted:
                break
            if key in out:
                continue
            if re.search(pattern, key):
                out[key] = _gen(sub, ctx, owner)
            elif pattern == r"^[A-Fa-f\d]{24}$":
                out[_hex_id(ctx)] = _gen(sub, ctx, owner)
            else:
                continue
            added += 1
        return out
    extra = s.get("additionalProperties")
    if isinstance(extra, Mapping) and extra and wanted:
        out["key_a"] = _gen(extra, ctx, owner)
    return out


def _array(s: Mapping[str, Any], ctx: _Ctx, owner: str) -> list[Any]:
    items = s.get("items")
    count = 2
    hi = s.get("maxItems")
    lo = s.get("minItems")
    if isinstance(hi, int):
        count = min(count, hi)
    if isinstance(lo, int):
        count = max(count, lo)
    if not isinstance(items, Mapping):
        return ["example", "example-2"][:count]
    if _is_deep_ref(s, ctx) and not lo:
        return []
    enum = items.get("enum")
    if isinstance(enum, list) and enum:
        # distinct values, so that uniqueItems holds
        return [enum[i % len(enum)] for i in range(min(count, len(enum)) or count)]
    out = [_gen(items, ctx, owner) for _ in range(count)]
    if s.get("uniqueItems") and len(out) > 1 and out[0] == out[1]:
        out = out[: max(1, lo or 1)]
    return out


def _hex_id(ctx: _Ctx) -> str:
    return f"575ecf887ae143cd83dc{ctx.next():04x}"


def _string(s: Mapping[str, Any], ctx: _Ctx) -> str:
    pattern = s.get("pattern")
    fmt = s.get("format")
    min_length, max_length = s.get("minLength"), s.get("maxLength")
    lo: int = min_length if isinstance(min_length, int) else 0
    hi: int | None = max_length if isinstance(max_length, int) else None
    if pattern == r"^[A-Fa-f\d]{24}$":
        return _hex_id(ctx)
    if fmt == "date-time":
        return _DATE_TIME
    if fmt == "email":
        return f"user{ctx.next()}@example.com"
    if fmt == "uri":
        return f"https://example.com/resource/{ctx.next()}"
    if isinstance(pattern, str):
        for candidate in _PATTERN_CANDIDATES:
            # Repeat/truncate the candidate to fit minLength/maxLength.
            size = max(lo, min(len(candidate), hi if hi is not None else len(candidate)))
            fitted = (candidate * (size // len(candidate) + 1))[:size]
            if re.search(pattern, fitted) and (hi is None or len(fitted) <= hi):
                return fitted
        raise ValueError(
            f"no example string matches pattern {pattern!r}: add one to _PATTERN_CANDIDATES"
        )
    value = f"example-{ctx.next()}"
    if len(value) < lo:
        value = value + "x" * (lo - len(value))
    if hi is not None:
        value = value[:hi]
    return value


def catalog_param(param: Param, operation: Operation | str | None = None) -> dict[str, Any] | None:
    """The catalog entry of ``param``: in ``operation`` when given, else the first with its name and place."""
    if operation is not None:
        full = operation.full_name if isinstance(operation, Operation) else operation
        resource, _, action = full.partition(".")
        actions = [
            a
            for r in catalog()["resources"]
            if r["name"] == resource
            for a in r["actions"]
            if a["name"] == action
        ]
    else:
        actions = [a for r in catalog()["resources"] for a in r["actions"]]
    for a in actions:
        for p in a["params"]:
            if p["name"] == param.api_name and p["in"] == param.location:
                entry: dict[str, Any] = p
                return entry
    return None


def example_for_param(param: Param, operation: Operation | str | None = None) -> Any:
    """A value for ``param`` (path/query strings, hashes from their schema, files as bytes).

    ``operation`` (an ``Operation`` or ``"resource.action"``) picks the exact
    catalog entry, which matters for parameters such as ``query`` whose schema
    differs per action.
    """
    entry = catalog_param(param, operation) or {}
    example = entry.get("example")
    schema_name = entry.get("schema")
    if param.kind == "file":
        return _FILE_BYTES
    if param.kind == "boolean":
        return True
    if param.kind in ("hash", "array"):
        if schema_name:
            return example_for_schema(schema_name)
        if param.kind == "array":
            return ["example"]
        return {"key": "value"}
    if param.enum:
        return example if example in param.enum else param.enum[0]
    if param.pattern is not None:
        if isinstance(example, str) and param.regex is not None and param.regex.search(example):
            return example
        ctx = _Ctx(True, 0)
        return _string({"type": "string", "pattern": param.pattern}, ctx)
    if isinstance(example, str):
        return example
    if param.api_name == "page":
        return "0"
    if param.api_name == "perPage":
        return "10"
    return "example"
