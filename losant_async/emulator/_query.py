"""Device filters of the emulated REST API: advanced queries, bracketed query keys, wildcard filters (pure)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from typing import Any

from .._time import from_epoch_ms
from ..errors import ValidationError
from .store import DeviceRecord

__all__ = ["device_matches", "doc_matches", "parse_brackets", "wildcard_match"]

_BRACKET = re.compile(r"\[([^\]]*)\]")


def parse_brackets(items: list[tuple[str, str]], name: str) -> Any:
    """The value of ``name`` rebuilt from bracketed keys (``tagFilter[0][key]=floor``).

    A plain ``name=value`` gives the string; numeric indexes give lists.
    Returns None when the parameter is absent.
    """
    root: dict[str, Any] = {}
    found = False
    for key, value in items:
        if key == name:
            found = True
            root[name] = value
            continue
        if not key.startswith(name + "["):
            continue
        found = True
        parts = _BRACKET.findall(key[len(name):])
        if not isinstance(root.get(name), dict):
            root[name] = {}
        node: dict[str, Any] = root[name]
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1] if parts else ""] = value
    if not found:
        return None
    return _listify(root[name])


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v) for k, v in node.items()}
    if converted and all(k.isdigit() or k == "" for k in converted):
        return [converted[k] for k in sorted(converted, key=lambda k: int(k) if k else 0)]
    return converted


def wildcard_match(pattern: str, value: str, *, case_insensitive: bool = True) -> bool:
    """Losant's filter strings: ``*`` matches anything; without one, the whole value must match."""
    if case_insensitive:
        pattern, value = pattern.lower(), value.lower()
    translated = pattern.replace("%", "*")
    return fnmatch.fnmatchcase(value, translated)


def _date(ms: int | None) -> str | None:
    if ms is None:
        return None
    dt = from_epoch_ms(ms)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _field_value(device: DeviceRecord, name: str) -> Any:
    if name == "id":
        return device.id
    if name == "name":
        return device.name
    if name == "deviceClass":
        return device.device_class
    if name in ("parentId", "gatewayId"):
        return device.parent_id
    if name == "creationDate":
        return _date(device.created)
    if name == "lastUpdated":
        return _date(device.updated)
    if name == "connectionStatus":
        return {1: "connected", 0: "disconnected"}.get(device.connected or 0, "disconnected")
    if name == "attributeName":
        return list(device.attributes)
    raise ValidationError(f"query field {name!r} is not supported by the emulator")


def _compare(op: str, actual: Any, expected: Any, ci: bool) -> bool:
    def norm(v: Any) -> Any:
        return v.lower() if ci and isinstance(v, str) else v

    values = actual if isinstance(actual, list) else [actual]
    a_values = [norm(v) for v in values]
    e = norm(expected)
    if op == "$eq":
        return e in a_values
    if op == "$ne":
        return e not in a_values
    if op == "$in":
        if not isinstance(expected, list):
            raise ValidationError("$in needs a list")
        return any(norm(x) in a_values for x in expected)
    if op == "$nin":
        if not isinstance(expected, list):
            raise ValidationError("$nin needs a list")
        return not any(norm(x) in a_values for x in expected)
    if op == "$like":
        return isinstance(expected, str) and any(isinstance(a, str) and wildcard_match(expected, a) for a in values)
    if op in ("$startsWith", "$endsWith", "$contains"):
        check: Callable[[str], bool]
        if op == "$startsWith":
            check = lambda a: a.startswith(e)  # noqa: E731
        elif op == "$endsWith":
            check = lambda a: a.endswith(e)  # noqa: E731
        else:
            check = lambda a: e in a  # noqa: E731
        return isinstance(e, str) and any(isinstance(a, str) and check(a) for a in a_values)
    if op in ("$gt", "$lt", "$gte", "$lte"):
        results = []
        for a in a_values:
            if a is None or e is None:
                continue
            try:
                results.append(
                    {"$gt": a > e, "$lt": a < e, "$gte": a >= e, "$lte": a <= e}[op]
                )
            except TypeError:
                continue
        return any(results)
    raise ValidationError(f"query operator {op!r} is not supported by the emulator")


def _match_field(device: DeviceRecord, name: str, condition: Any) -> bool:
    if name == "tags":
        return _match_tags(device, condition)
    actual = _field_value(device, name)
    if isinstance(condition, Mapping):
        ci = bool(condition.get("$ci", False))
        ops = [(k, v) for k, v in condition.items() if k != "$ci"]
        if not ops:
            raise ValidationError(f"query condition on {name} has no operator")
        return all(_compare(op, actual, expected, ci) for op, expected in ops)
    return _compare("$eq", actual, condition, False)


def _tag_value_matches(values: list[str], condition: Any) -> bool:
    if condition is None:
        return True
    if isinstance(condition, str):
        return condition in values
    if isinstance(condition, Mapping):
        if "$in" in condition:
            return any(v in values for v in condition["$in"])
        if "$nin" in condition:
            return not any(v in values for v in condition["$nin"])
    raise ValidationError("tag conditions are a string, null, {$in: [...]} or {$nin: [...]}")


def _match_tags(device: DeviceRecord, condition: Any) -> bool:
    tags = device.tag_dict()
    if condition is None:
        return not tags
    if not isinstance(condition, Mapping):
        raise ValidationError("tags query must be an object")
    if "$tagKey" in condition or "$tagValue" in condition:
        key_cond = condition.get("$tagKey")
        value_cond = condition.get("$tagValue")
        for key, values in tags.items():
            if key_cond is not None and not _tag_value_matches([key], key_cond):
                continue
            if _tag_value_matches(values, value_cond):
                return True
        return False
    for key, value_cond in condition.items():
        if key not in tags or not _tag_value_matches(tags[key], value_cond):
            return False
    return True


def device_matches(device: DeviceRecord, query: Any) -> bool:
    """Whether the device satisfies an advanced device query (``$and``/``$or``/``$nor``, field conditions)."""
    if query is None:
        return True
    if not isinstance(query, Mapping):
        raise ValidationError("an advanced query must be a JSON object")
    for key, condition in query.items():
        if key in ("$and", "$or", "$nor"):
            if not isinstance(condition, list):
                raise ValidationError(f"{key} needs a list of queries")
            results = (device_matches(device, sub) for sub in condition)
            if key == "$and" and not all(results):
                return False
            if key == "$or" and not any(results):
                return False
            if key == "$nor" and any(results):
                return False
        elif not _match_field(device, key, condition):
            return False
    return True


def _doc_value(doc: Mapping[str, Any], name: str) -> Any:
    value: Any = doc
    for part in name.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def doc_matches(doc: Mapping[str, Any], query: Any) -> bool:
    """Whether a stored object (a data-table row, an event...) satisfies an advanced query.

    Fields are compared with ``$eq``/``$ne``/``$gt``/``$gte``/``$lt``/``$lte``/``$in``/``$nin``/
    ``$like``/``$startsWith``/``$endsWith``/``$contains`` (``$ci`` for case-insensitive) or by
    plain equality; ``$and``/``$or``/``$nor`` combine queries; dotted names reach nested fields.
    """
    if query is None:
        return True
    if not isinstance(query, Mapping):
        raise ValidationError("an advanced query must be a JSON object")
    for key, condition in query.items():
        if key in ("$and", "$or", "$nor"):
            if not isinstance(condition, list):
                raise ValidationError(f"{key} needs a list of queries")
            results = [doc_matches(doc, sub) for sub in condition]
            if (key == "$and" and not all(results)) or (key == "$or" and not any(results)) or (key == "$nor" and any(results)):
                return False
            continue
        actual = _doc_value(doc, key)
        if isinstance(condition, Mapping):
            ci = bool(condition.get("$ci", False))
            ops = [(k, v) for k, v in condition.items() if k != "$ci"]
            if not ops:
                raise ValidationError(f"query condition on {key} has no operator")
            if not all(_compare(op, actual, expected, ci) for op, expected in ops):
                return False
        elif not _compare("$eq", actual, condition, False):
            return False
    return True
