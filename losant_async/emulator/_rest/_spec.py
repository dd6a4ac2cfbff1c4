"""The API catalog and JSON Schemas as the emulator uses them: body validation and schema-complete replies.

The vendored ``spec/`` directory is found next to the package (a source checkout
or an editable install) or at ``$LOSANT_ASYNC_SPEC_DIR``. Without it the
emulator still answers every action, but bodies are not validated against the
schemas and replies carry only the fields the handlers set.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..._time import from_epoch_ms, now_ms
from ...errors import ValidationError

__all__ = ["action", "fill", "minimal", "project", "schema", "spec_dir", "validate"]

_REF = "#/definitions/"
_HEX24 = r"^[A-Fa-f\d]{24}$"
_PATTERN_CANDIDATES = ("a", "example", "temperature", "my-slug", "1.0.0", "a.txt", "x@example.com", "000000000000000000000000")


@functools.cache
def spec_dir() -> Path | None:
    """Where ``catalog.json`` and ``schemas/`` are, or None."""
    # The vendored API spec ships inside the package (package data), so an installed wheel has it.
    candidate = Path(__file__).resolve().parents[2] / "_spec"
    return candidate if (candidate / "catalog.json").is_file() else None


@functools.cache
def _catalog() -> dict[str, dict[str, Any]]:
    root = spec_dir()
    if root is None:
        return {}
    data = json.loads((root / "catalog.json").read_text(encoding="utf-8"))
    return {f"{r['name']}.{a['name']}": a for r in data["resources"] for a in r["actions"]}


def action(full_name: str) -> dict[str, Any] | None:
    """The catalog entry of ``resource.action`` (None without a spec)."""
    return _catalog().get(full_name)


@functools.cache
def schema(name: str | None) -> dict[str, Any] | None:
    """Schema ``name`` (None when unnamed, missing from the spec, or no spec)."""
    root = spec_dir()
    if name is None or root is None:
        return None
    path = root / "schemas" / f"{name}.json"
    if not path.is_file():
        return None
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


@functools.cache
def _validator(name: str) -> Any:
    try:
        import jsonschema  # type: ignore[import-untyped]
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT7
    except ImportError:  # validation is a nicety: without jsonschema the emulator accepts any body
        return None
    root = spec_dir()
    contents = schema(name)
    if root is None or contents is None:
        return None

    def retrieve(uri: str) -> Resource[Any]:
        target = schema(uri.removeprefix("urn:losant:"))
        return Resource.from_contents(_rewrite(target or {}), default_specification=DRAFT7)

    registry: Registry[Any] = Registry(retrieve=retrieve)  # type: ignore[call-arg]
    return jsonschema.Draft7Validator(_rewrite(contents), registry=registry)


def _rewrite(contents: Mapping[str, Any]) -> Any:
    # "#/definitions/<name>" means spec/schemas/<name>.json (spec/README.md)
    return json.loads(json.dumps(contents).replace('"' + _REF, '"urn:losant:'))


def validate(name: str | None, body: Any, *, what: str = "body") -> None:
    """Raise ValidationError naming the first field of ``body`` that schema ``name`` refuses."""
    if name is None:
        return
    validator = _validator(name)
    if validator is None:
        return
    try:
        errors = list(validator.iter_errors(body))
    except Exception:  # a few vendored schemas are malformed (a string maxItems): accept what they cannot judge
        return
    if not errors:
        return
    import jsonschema

    best = jsonschema.exceptions.best_match(errors)
    where = ".".join(str(p) for p in best.absolute_path) or what
    raise ValidationError(f"{where}: {best.message}"[:500])


# -- schema-complete replies ---------------------------------------------------------------------


def iso_now() -> str:
    # formatted here rather than by _common.iso: _common imports _listing, which imports this module
    dt = from_epoch_ms(now_ms())
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _resolve(node: Any) -> Any:
    if isinstance(node, str):  # a schema's name
        node = schema(node) or {}
    seen = 0
    while isinstance(node, Mapping) and isinstance(node.get("$ref"), str) and seen < 10:
        ref = node["$ref"]
        target = schema(ref[len(_REF):]) if ref.startswith(_REF) else None
        node = target if target is not None else {}
        seen += 1
    return node


def _members(node: Mapping[str, Any]) -> list[Any]:
    for key in ("oneOf", "anyOf"):
        members = node.get(key)
        if isinstance(members, list) and members:
            return [_resolve(m) for m in members]
    return []


def _types(node: Mapping[str, Any]) -> list[str]:
    kind = node.get("type")
    if isinstance(kind, str):
        return [kind]
    if isinstance(kind, list):
        return [k for k in kind if isinstance(k, str)]
    if "properties" in node or "patternProperties" in node or "required" in node:
        return ["object"]
    if "items" in node:
        return ["array"]
    return []


def _string(node: Mapping[str, Any]) -> str:
    if node.get("format") == "date-time":
        return iso_now()
    if node.get("format") == "email":
        return "user@example.com"
    if node.get("format") == "uri":
        return "http://127.0.0.1/"
    pattern = node.get("pattern")
    raw_low = node.get("minLength")
    low: int = raw_low if isinstance(raw_low, int) else 0
    if pattern == _HEX24:
        from ..store import new_id

        return new_id()
    if isinstance(pattern, str):
        try:
            regex = re.compile(pattern)
        except re.error:
            regex = None
        for candidate in _PATTERN_CANDIDATES:
            if regex is not None and regex.search(candidate) and len(candidate) >= low:
                return candidate
    return "x" * max(low, 0)


def minimal(node: Any, depth: int = 0) -> Any:
    """The smallest value a schema accepts (required fields only, first enum, first union member)."""
    node = _resolve(node)
    if not isinstance(node, Mapping) or depth > 30:
        return None
    if "const" in node:
        return node["const"]
    enum = node.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    members = _members(node)
    if members:
        chosen = next((m for m in members if "null" not in _types(m) or len(_types(m)) > 1), members[0])
        merged = {k: v for k, v in node.items() if k not in ("oneOf", "anyOf")}
        if isinstance(chosen, Mapping):
            merged.update(chosen)
        return minimal(merged, depth + 1)
    types = _types(node)
    kind = next((t for t in types if t != "null"), "null" if types else None)
    if kind == "object":
        return fill(node, {}, depth + 1)
    if kind == "array":
        raw_count = node.get("minItems")
        count: int = raw_count if isinstance(raw_count, int) else 0
        return [minimal(node.get("items", {}), depth + 1) for _ in range(count)]
    if kind == "string":
        return _string(node)
    if kind in ("number", "integer"):
        low = node.get("minimum")
        return low if isinstance(low, (int, float)) else 0
    if kind == "boolean":
        return False
    return None


def fill(node: Any, value: Any, depth: int = 0) -> Any:
    """``value`` with every field the schema requires, recursively, added where absent."""
    node = _resolve(node)
    if not isinstance(node, Mapping) or depth > 30:
        return value
    members = _members(node)
    if members:
        if isinstance(value, dict):
            objects = [m for m in members if isinstance(m, Mapping) and "object" in _types(m)]
            if not objects:
                return value
            # the member whose properties best match what is there
            best = max(objects, key=lambda m: len(set(m.get("properties", {})) & set(value)))
            merged = {k: v for k, v in node.items() if k not in ("oneOf", "anyOf")}
            merged.update(best)
            return fill(merged, value, depth + 1)
        if isinstance(value, list):
            arrays = [m for m in members if isinstance(m, Mapping) and "array" in _types(m)]
            return fill(arrays[0], value, depth + 1) if arrays else value
        return value
    if isinstance(value, dict):
        raw_props = node.get("properties")
        props: Mapping[str, Any] = raw_props if isinstance(raw_props, Mapping) else {}
        required = list(node.get("required") or ())
        if depth == 0 and not required:
            # The generated client treats a top-level reply schema with no required list as an
            # entity (it must carry ``id``) or a collection (``items``), so a foreign object is
            # not decoded as one; the emulator's replies keep that promise.
            required = [name for name in ("id", "items") if name in props]
        for name in required:
            if name not in value:
                value[name] = minimal(props.get(name, {}), depth + 1)
        for name, sub in props.items():
            if name in value and isinstance(value[name], (dict, list)):
                value[name] = fill(sub, value[name], depth + 1)
        pattern_props = node.get("patternProperties")
        if isinstance(pattern_props, Mapping):
            for key, item in value.items():
                if key in props:
                    continue
                for pattern, sub in pattern_props.items():
                    if re.search(pattern, key) and isinstance(item, (dict, list)):
                        value[key] = fill(sub, item, depth + 1)
        return value
    if isinstance(value, list):
        items = node.get("items")
        if isinstance(items, Mapping):
            return [fill(items, v, depth + 1) for v in value]
    return value


def _object_members(node: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [m for m in _members(node) if isinstance(m, Mapping) and "object" in _types(m)]


def _best_member(node: Mapping[str, Any], value: Mapping[str, Any]) -> Mapping[str, Any]:
    """The union member a stored object answers as: the most matching properties, discriminators first."""
    members = _object_members(node)

    def score(member: Mapping[str, Any]) -> tuple[int, int]:
        props = member.get("properties", {}) if isinstance(member.get("properties"), Mapping) else {}
        fits = 0
        for name, sub in props.items():
            sub = _resolve(sub)
            enum = sub.get("enum") if isinstance(sub, Mapping) else None
            if name in value and isinstance(enum, list):
                fits += 10 if value[name] in enum else -100
        return fits, len(set(props) & set(value))

    return max(members, key=score)


def _discriminate(node: Mapping[str, Any], member: Mapping[str, Any], value: dict[str, Any]) -> None:
    """Set the absent enum fields that tell ``member`` apart from the other members of the union."""
    props = member.get("properties", {})
    others = [m for m in _object_members(node) if m is not member]
    for name, sub in props.items() if isinstance(props, Mapping) else ():
        sub = _resolve(sub)
        enum = sub.get("enum") if isinstance(sub, Mapping) else None
        if name in value or not isinstance(enum, list) or not enum:
            continue
        taken: list[Any] = []
        for other in others:
            other_props = other.get("properties")
            if isinstance(other_props, Mapping) and name in other_props:
                taken.extend(_resolve(other_props[name]).get("enum") or ())
        if not taken:
            continue
        free = [e for e in enum if e not in taken]
        if free:
            value[name] = free[0]


def project(node: Any, value: Any, depth: int = 0) -> Any:
    """``value`` cut to what the schema allows: unknown fields dropped where ``additionalProperties``
    is false (stored secrets are not echoed), arrays cut to ``maxItems``, a union's discriminator set."""
    node = _resolve(node)
    if not isinstance(node, Mapping) or depth > 30:
        return value
    if _members(node):
        if isinstance(value, dict) and _object_members(node):
            member = _best_member(node, value)
            merged = {k: v for k, v in node.items() if k not in ("oneOf", "anyOf")}
            merged.update(member)
            _discriminate(node, member, value)
            return project(merged, value, depth + 1)
        if isinstance(value, list):
            arrays = [m for m in _members(node) if isinstance(m, Mapping) and "array" in _types(m)]
            return project(arrays[0], value, depth + 1) if arrays else value
        return value
    if isinstance(value, dict):
        raw_props = node.get("properties")
        props: Mapping[str, Any] = raw_props if isinstance(raw_props, Mapping) else {}
        raw_patterns = node.get("patternProperties")
        pattern_props: Mapping[str, Any] = raw_patterns if isinstance(raw_patterns, Mapping) else {}
        closed = node.get("additionalProperties") is False
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in props:
                out[key] = project(props[key], item, depth + 1)
                continue
            matched = next((sub for pattern, sub in pattern_props.items() if re.search(pattern, key)), None)
            if matched is not None:
                out[key] = project(matched, item, depth + 1)
            elif not closed:
                extra = node.get("additionalProperties")
                out[key] = project(extra, item, depth + 1) if isinstance(extra, Mapping) else item
        return out
    if isinstance(value, list):
        items = node.get("items")
        limit = node.get("maxItems")
        cut = value[:limit] if isinstance(limit, int) else value
        return [project(items, v, depth + 1) for v in cut] if isinstance(items, Mapping) else cut
    return value
