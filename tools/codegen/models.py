"""JSON Schema -> msgspec Structs and aliases: the shape rules, their counts, and the models module text."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .naming import pascal, py_identifier
from .spec import Spec

__all__ = ["ModelBuilder", "TypeTree", "render"]

# A type as a small tree of tuples: ("any",), ("none",), ("bool",), ("int",),
# ("float",), ("str",), ("named", Name), ("dict", T), ("list", T), ("union", (T, ...)).
TypeTree = tuple[Any, ...]

ANY: TypeTree = ("any",)
NONE: TypeTree = ("none",)
BOOL: TypeTree = ("bool",)
INT: TypeTree = ("int",)
FLOAT: TypeTree = ("float",)
STR: TypeTree = ("str",)
# A ``format: date-time`` string, decoded into an aware ``datetime`` (``AwareDatetime``).
DATETIME: TypeTree = ("datetime",)
# JSON numbers: `int | float` keeps 3 an int (a count typed "number" should not read as 3.0).
NUMBER: TypeTree = ("union", (INT, FLOAT))
_PRIMITIVE = {"string": STR, "integer": INT, "number": NUMBER, "boolean": BOOL, "null": NONE}
_TYPE_KEYS = ("type", "properties", "patternProperties", "additionalProperties", "items", "enum", "$ref", "oneOf", "anyOf", "allOf", "const")
_REF_PREFIX = "#/definitions/"
_DOC_KEYS = ("title", "description", "$schema")
# Server-assigned fields an entity may lack: a dashboard names an application only when linked to one.
_NOT_ASSIGNED: dict[str, set[str]] = {"dashboard": {"applicationId"}}


def render(t: TypeTree, prefix: str = "", runtime: bool = False) -> str:
    """Python source for ``t``; ``runtime`` spells unions as ``Union[...]`` (safe to evaluate on 3.10)."""
    kind = t[0]
    if kind == "named":
        return f"{prefix}{t[1]}"
    if kind == "datetime":
        return f"{prefix}AwareDatetime"
    if kind == "dict":
        return f"dict[str, {render(t[1], prefix, runtime)}]"
    if kind == "list":
        return f"list[{render(t[1], prefix, runtime)}]"
    if kind == "union":
        parts = [render(m, prefix, runtime) for m in t[1]]
        return f"Union[{', '.join(parts)}]" if runtime else " | ".join(parts)
    return {
        "any": "Any",
        "none": "None",
        "bool": "bool",
        "int": "int",
        "float": "float",
        "str": "str",
    }[kind]


def _canon(s: Any) -> str:
    """Canonical JSON of a schema, ignoring titles and descriptions (not properties named so)."""

    def strip(node: Any, is_map: bool = False) -> Any:
        if isinstance(node, list):
            return [strip(x) for x in node]
        if not isinstance(node, dict):
            return node
        if is_map:
            return {k: strip(v) for k, v in node.items()}
        out = {}
        for k, v in node.items():
            if k in _DOC_KEYS:
                continue
            out[k] = strip(v, is_map=k in ("properties", "patternProperties", "definitions"))
        return out

    return json.dumps(strip(s), sort_keys=True, separators=(",", ":"))


def _constraint_only(members: list[Any]) -> bool:
    """``oneOf: [{required: [...]}, ...]``: members that only constrain the parent's shape."""
    return all(isinstance(m, dict) and not any(k in m for k in _TYPE_KEYS) for m in members)


def _merge(parent: dict[str, Any], member: Any) -> Any:
    """``member`` with the parent's type-relevant keywords folded in."""
    if isinstance(member, list):  # one malformed schema wraps a member in a list
        return {"oneOf": member}
    base = {k: v for k, v in parent.items() if k not in ("oneOf", "anyOf", "allOf", *_DOC_KEYS)}
    if not base or not isinstance(member, dict):
        return member
    out = dict(base)
    for k, v in member.items():
        if k == "properties" and isinstance(out.get("properties"), dict):
            out["properties"] = {**out["properties"], **v}
        elif k == "required" and isinstance(out.get("required"), list):
            out["required"] = [*out["required"], *v]
        else:
            out[k] = v
    return out


@dataclass
class FieldDef:
    py: str
    wire: str
    type: TypeTree
    required: bool
    """The schema lists the field in ``required``."""
    facts: list[str] = field(default_factory=list)
    enforced: bool = False
    """Typed without ``UnsetType`` and without a default: a reply that leaves it out is refused."""
    inferred: bool = False
    """Enforced by the identity rule (see ``ModelBuilder._enforce_required``), not by the schema."""
    reason: str = ""
    """Why it is enforced: ``schema``, ``create`` (the create schema requires it), ``server``
    (the server assigns it) or ``identity``."""


@dataclass
class StructDef:
    name: str
    schema: str
    """The top-level schema this Struct comes from."""
    path: str
    """Where in that schema (``""`` for the schema itself)."""
    fields: list[FieldDef] = field(default_factory=list)


@dataclass
class AliasDef:
    name: str
    schema: str
    type: TypeTree
    facts: list[str] = field(default_factory=list)


class ModelBuilder:
    """Converts every schema once; ``module_text()`` then renders the models module."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.schemas = spec.schemas
        self.missing = spec.missing
        self.top_names: dict[str, str] = {n: pascal(n) for n in [*self.schemas, *self.missing]}
        self._schema_of_name = {v: k for k, v in self.top_names.items()}
        if len(self._schema_of_name) != len(self.top_names):
            raise ValueError("two schema names map to one Python name")
        self.used: set[str] = set(self.top_names.values())
        self.structs: list[StructDef] = []
        self.struct_by_schema: dict[str, StructDef] = {}
        self.aliases: dict[str, AliasDef] = {}
        self.rules: Counter[str] = Counter()
        self.fallbacks: list[str] = []
        """``schema/path: what`` for every place widened to ``dict[str, Any]``, ``list[Any]`` or ``Any``."""
        self._pending_notes: list[tuple[str, str]] = []
        self.kept_optional: list[str] = []
        self.required_by_rule: dict[str, list[str]] = {}
        """``create`` / ``server`` -> the ``Struct.field`` those rules made required."""
        """``Struct.field`` the schema requires but that stay optional, because requests use the Struct."""
        self.response_structs: set[str] = set()
        """Structs reachable from a reply or an event (and not from a request body)."""
        self.request_structs: set[str] = set()
        """Structs reachable from a request body."""
        self._to_reply: set[str] = set()
        self._kinds_guard: set[str] = set()
        self._canon_index: dict[str, str] = {}
        for name, s in self.schemas.items():
            self._canon_index.setdefault(_canon(s), name)

    # -- classification -------------------------------------------------------

    def _ref_target(self, ref: str, owner: str) -> str:
        name = ref[len(_REF_PREFIX) :] if ref.startswith(_REF_PREFIX) else ref
        # Upstream slip: instanceAuditLogs/instanceOrgMembers list themselves as items.
        if name == owner and name.endswith("s") and name[:-1] in self.schemas:
            self.rules["self_collection_items_fixed"] += 1
            return name[:-1]
        return name

    def _normalize(self, s: dict[str, Any], count: bool = False) -> dict[str, Any]:
        if "allOf" in s:
            merged: dict[str, Any] = {k: v for k, v in s.items() if k != "allOf"}
            for member in s["allOf"]:
                merged = _merge(merged, member) if merged else member
            if count:
                self.rules["allof_merged"] += 1
            s = merged
        for key in ("oneOf", "anyOf"):
            if key in s and _constraint_only(s[key]):
                if count:
                    self.rules["oneof_constraint_only_ignored"] += 1
                s = {k: v for k, v in s.items() if k != key}
        return s

    def _is_struct_shape(self, s: dict[str, Any]) -> bool:
        # Named fields plus free keys (data-table rows, advanced queries): a Struct would
        # drop the free keys, so those stay dicts.
        return (
            s.get("type", "object") == "object"
            and isinstance(s.get("properties"), dict)
            and not s.get("patternProperties")
            and "oneOf" not in s
            and "anyOf" not in s
        )

    def _shallow_kinds(self, s: Any, owner: str) -> frozenset[str]:
        """What a schema decodes to at the top (obj, arr, str, int, ...), without converting it."""
        if isinstance(s, list):
            return frozenset().union(*(self._shallow_kinds(m, owner) for m in s))
        if not isinstance(s, dict):
            return frozenset({"any"})
        if "$ref" in s:
            name = s["$ref"][len(_REF_PREFIX) :]
            if name == owner and name[:-1] in self.schemas:
                name = name[:-1]
            if name not in self.schemas:
                return frozenset({"any"})
            if name in self._kinds_guard:
                return frozenset({"obj"})
            self._kinds_guard.add(name)
            try:
                return self._shallow_kinds(self.schemas[name], name)
            finally:
                self._kinds_guard.discard(name)
        s = self._normalize(s)
        for key in ("oneOf", "anyOf"):
            if key in s:
                return frozenset().union(*(self._shallow_kinds(_merge(s, m), owner) for m in s[key]))
        if "enum" in s and isinstance(s["enum"], list):
            return frozenset(self._value_kind(v) for v in s["enum"])
        t = s.get("type")
        if isinstance(t, list):
            return frozenset().union(*(self._shallow_kinds({**s, "type": x}, owner) for x in t))
        if t == "object" or (t is None and any(k in s for k in ("properties", "patternProperties", "additionalProperties"))):
            return frozenset({"obj"})
        if t == "array" or (t is None and "items" in s):
            return frozenset({"arr"})
        return frozenset({{"string": "str", "integer": "int", "number": "float", "boolean": "bool", "null": "none"}.get(t, "any") if isinstance(t, str) else "any"})

    @staticmethod
    def _value_kind(v: Any) -> str:
        if v is None:
            return "none"
        if isinstance(v, bool):
            return "bool"
        if isinstance(v, int):
            return "int"
        if isinstance(v, float):
            return "float"
        if isinstance(v, str):
            return "str"
        return "any"

    def kinds(self, t: TypeTree) -> frozenset[str]:
        kind = t[0]
        if kind == "named":
            schema = self._schema_of_name.get(t[1])
            if schema is None:
                return frozenset({"obj"})  # an inline Struct
            if schema in self.missing:
                return frozenset({"any"})
            return self._shallow_kinds(self.schemas[schema], schema)
        if kind == "dict":
            return frozenset({"obj"})
        if kind == "list":
            return frozenset({"arr"})
        if kind == "union":
            return frozenset().union(*(self.kinds(m) for m in t[1]))
        if kind == "datetime":
            return frozenset({"str"})  # msgspec allows one str-like member per union
        return frozenset({kind})

    # -- conversion -----------------------------------------------------------

    def _note(self, path: str, text: str) -> None:
        self._pending_notes.append((path, text))

    def _fallback(self, owner: str, path: str, what: str) -> None:
        self.fallbacks.append(f"{owner}{path or '/'}: {what}")

    def _unique(self, name: str) -> str:
        candidate, n = name, 2
        while candidate in self.used:
            candidate, n = f"{name}{n}", n + 1
        self.used.add(candidate)
        return candidate

    def convert(self, s: Any, hint: str, owner: str, path: str) -> TypeTree:
        """The type for schema ``s`` met at ``owner``/``path``; inline objects become Structs named ``hint``."""
        if isinstance(s, list):
            s = {"oneOf": s}
        if not isinstance(s, dict):
            return ANY
        if any(k in s for k in ("properties", "oneOf", "anyOf", "allOf")):
            same = self._canon_index.get(_canon(s))
            if same is not None and (path or same != owner):
                self.rules["inline_reuses_top_level"] += 1
                return ("named", self.top_names[same])
        if "$ref" in s:
            self.rules["ref"] += 1
            target = self._ref_target(s["$ref"], owner)
            if target not in self.top_names:
                raise ValueError(f"{owner}{path}: $ref to unknown definition {target!r}")
            return ("named", self.top_names[target])
        s = self._normalize(s, count=True)
        for key in ("oneOf", "anyOf"):
            if key in s:
                return self._convert_union(s, key, hint, owner, path)
        if "enum" in s and isinstance(s["enum"], list):
            values = s["enum"]
            if all(isinstance(v, str) or v is None for v in values):
                self.rules["enum_as_str"] += 1
                shown = ", ".join(str(v) for v in values if v is not None)
                self._note(path, f"one of: {shown}")
                return self._combine([STR, NONE] if None in values else [STR], owner, path)
        t = s.get("type")
        if isinstance(t, list):
            self.rules["type_array_union"] += 1
            return self._combine([self.convert({**s, "type": x}, hint, owner, path) for x in t], owner, path)
        if t == "object" or (t is None and any(k in s for k in ("properties", "patternProperties", "additionalProperties"))):
            return self._convert_object(s, hint, owner, path)
        if t == "array" or (t is None and "items" in s):
            items = s.get("items")
            if isinstance(items, dict) and items:
                return ("list", self.convert(items, hint + "Item", owner, path + "/items"))
            self.rules["array_of_any"] += 1
            return ("list", ANY)
        if t == "string" and s.get("format") == "date-time":
            self.rules["date_time_aware"] += 1
            return DATETIME
        if isinstance(t, str) and t in _PRIMITIVE:
            return _PRIMITIVE[t]
        self.rules["untyped_any"] += 1
        return ANY

    def _convert_object(self, s: dict[str, Any], hint: str, owner: str, path: str) -> TypeTree:
        if isinstance(s.get("properties"), dict) and s.get("patternProperties"):
            self.rules["properties_with_pattern_properties_dict"] += 1
            self._note(path, "named and free keys: dict[str, Any]")
            self._fallback(owner, path, "dict[str, Any] (properties plus patternProperties)")
            return ("dict", ANY)
        if isinstance(s.get("properties"), dict):
            if isinstance(s.get("additionalProperties"), dict):
                self.rules["struct_ignoring_additional_properties"] += 1
            self.rules["struct_inline"] += 1
            return ("named", self._struct(s, self._unique(hint), owner, path).name)
        pattern_props = s.get("patternProperties")
        if isinstance(pattern_props, dict) and pattern_props:
            self.rules["pattern_properties_dict"] += 1
            values = [
                self.convert(v, hint + "Value", owner, f"{path}/patternProperties")
                for v in pattern_props.values()
            ]
            return ("dict", self._combine(values, owner, path))
        extra = s.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            self.rules["additional_properties_dict"] += 1
            return ("dict", self.convert(extra, hint + "Value", owner, f"{path}/additionalProperties"))
        self.rules["object_without_properties_dict"] += 1
        return ("dict", ANY)

    def _leaves(self, s: dict[str, Any], key: str) -> list[Any]:
        """The members of a oneOf, with nested pure oneOfs flattened into one list."""
        out: list[Any] = []
        for member in s[key]:
            m = _merge(s, member)
            if isinstance(m, dict):
                m2 = self._normalize(m)
                inner = "oneOf" if "oneOf" in m2 else "anyOf" if "anyOf" in m2 else None
                if inner is not None and "properties" not in m2:
                    out.extend(self._leaves(m2, inner))
                    continue
            out.append(m)
        return out

    def _discriminator(self, members: list[Any], owner: str) -> str | None:
        resolved = []
        for m in members:
            if isinstance(m, dict) and "$ref" in m:
                m = self.schemas.get(self._ref_target(m["$ref"], owner), {})
            if not isinstance(m, dict) or not isinstance(m.get("properties"), dict):
                return None
            resolved.append(m)
        for key in resolved[0]["properties"]:
            values = []
            for m in resolved:
                prop = m["properties"].get(key)
                if not isinstance(prop, dict) or key not in (m.get("required") or ()):
                    break
                enum = prop.get("enum") or ([prop["const"]] if "const" in prop else None)
                if not enum or len(enum) != 1:
                    break
                values.append(enum[0])
            else:
                if len(set(map(str, values))) == len(values):
                    return str(key)
        return None

    def _convert_union(self, s: dict[str, Any], key: str, hint: str, owner: str, path: str) -> TypeTree:
        leaves = self._leaves(s, key)
        kinds = [self._shallow_kinds(m, owner) for m in leaves]
        if any("any" in k for k in kinds):
            self.rules["oneof_with_untyped_member_any"] += 1
            self._fallback(owner, path, f"Any ({key} with an untyped member)")
            self._note(path, f"{key} with an untyped member: Any")
            return ANY
        objs = [i for i, k in enumerate(kinds) if "obj" in k]
        arrs = [i for i, k in enumerate(kinds) if "arr" in k]
        widen_objs = len(objs) > 1
        widen_arrs = len(arrs) > 1
        if widen_objs:
            disc = self._discriminator([leaves[i] for i in objs], owner)
            if disc is not None:
                self.rules["oneof_objects_discriminated_widened_dict"] += 1
                text = f"{len(objs)} object shapes told apart by `{disc}`: dict[str, Any]"
            else:
                self.rules["oneof_objects_widened_dict"] += 1
                text = f"{len(objs)} object shapes without a discriminator: dict[str, Any]"
            self._note(path, text)
            self._fallback(owner, path, text)
        if widen_arrs:
            self.rules["oneof_arrays_widened_list"] += 1
            self._note(path, f"{len(arrs)} array shapes: list[Any]")
            self._fallback(owner, path, f"{len(arrs)} array shapes: list[Any]")
        members: list[TypeTree] = []
        for i, leaf in enumerate(leaves):
            if widen_objs and i in objs:
                if i == objs[0]:
                    members.append(("dict", ANY))
                continue
            if widen_arrs and i in arrs:
                if i == arrs[0]:
                    members.append(("list", ANY))
                continue
            members.append(self.convert(leaf, hint, owner, path))
        if not (widen_objs or widen_arrs):
            if objs or arrs:
                self.rules["oneof_union"] += 1
            else:
                self.rules["oneof_primitive_union"] += 1
        return self._combine(members, owner, path)

    def _combine(self, members: list[TypeTree], owner: str, path: str) -> TypeTree:
        """A union msgspec accepts, or ``Any`` (counted) when the members cannot coexist."""
        flat: list[TypeTree] = []
        for m in members:
            for x in m[1] if m[0] == "union" else (m,):
                if x not in flat:
                    flat.append(x)
        if ANY in flat:
            return ANY
        if DATETIME in flat and STR in flat:
            # A date-time or any other string: msgspec cannot tell them apart, so str.
            self.rules["date_time_with_str_kept_str"] += 1
            flat.remove(DATETIME)
        if NONE in flat:  # None reads best last
            flat.remove(NONE)
            flat.append(NONE)
        if len(flat) == 1:
            return flat[0]
        kinds = [self.kinds(m) for m in flat]
        for k in ("obj", "arr", "str"):
            if sum(k in ks for ks in kinds) > 1:
                self.rules["union_not_allowed_any"] += 1
                self._fallback(owner, path, "Any (members msgspec cannot tell apart)")
                self._note(path, "members msgspec cannot tell apart: Any")
                return ANY
        return ("union", tuple(flat))

    def _struct(self, s: dict[str, Any], name: str, owner: str, path: str) -> StructDef:
        sd = StructDef(name=name, schema=owner, path=path)
        self.structs.append(sd)
        required = set(s.get("required") or ())
        seen: set[str] = set()
        for wire, sub in s["properties"].items():
            py = py_identifier(wire)
            while py in seen:
                py += "_"
            seen.add(py)
            fpath = f"{path}/{wire}"
            t = self.convert(sub, name + pascal(wire), owner, fpath)
            facts = [text for p, text in self._pending_notes if p == fpath or p.startswith(fpath + "/")]
            self._pending_notes = [(p, x) for p, x in self._pending_notes if not (p == fpath or p.startswith(fpath + "/"))]
            sd.fields.append(FieldDef(py=py, wire=wire, type=t, required=wire in required, facts=facts))
        return sd

    def build(self) -> None:
        for schema, s in self.schemas.items():
            name = self.top_names[schema]
            norm = self._normalize(s, count=True)
            if self._is_struct_shape(norm):
                self.rules["struct_top_level"] += 1
                self.struct_by_schema[schema] = self._struct(norm, name, schema, "")
            else:
                self._pending_notes = []
                t = self.convert(s, name, schema, "")
                self.rules["alias_top_level"] += 1
                facts = [text for _, text in self._pending_notes]
                self.aliases[name] = AliasDef(name=name, schema=schema, type=t, facts=facts)
            self._pending_notes = []
        for schema in self.missing:
            name = self.top_names[schema]
            self.rules["missing_schema_any_alias"] += 1
            self.aliases[name] = AliasDef(name=name, schema=schema, type=ANY, facts=["not shipped with the spec (MISSING.txt)"])
        self._enforce_required()

    # -- required fields ------------------------------------------------------------

    def _in_reply(self, name: str) -> bool:
        return name in self._to_reply

    def _reachable(self, roots: set[str]) -> set[str]:
        """The Struct and alias names reachable from ``roots`` through field and alias types."""
        by_name = {sd.name: sd for sd in self.structs}
        seen: set[str] = set()
        stack = sorted(roots)
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            types: list[TypeTree] = []
            if name in by_name:
                types = [f.type for f in by_name[name].fields]
            elif name in self.aliases:
                types = [self.aliases[name].type]
            for t in types:
                stack.extend(sorted(_named(t)))
        return seen

    def _enforce_required(self) -> None:
        """Make the fields a reply must carry required, in reply-only Structs.

        A Struct reachable from a request body keeps every field optional (a caller
        may build a partial body, and the server checks it). In a Struct reachable
        only from success replies and events, a field is required when:

        1. **schema**: its schema lists it in ``required``;
        2. **create**: it is a top-level entity schema ``x`` and ``xPost`` (the body
           that creates it) requires the field: what creation demands, every copy
           of the entity carries (``devicePost`` requires ``name``, so a ``Device``
           has a ``name``);
        3. **server**: it is a top-level entity schema (one with an ``id``) and the
           field is one the server assigns on creation: ``id``, the entity's own
           ``xId`` (``deviceId`` in ``device``), ``applicationId``, ``creationDate``,
           ``lastUpdated``. A dashboard's ``applicationId`` is left out: dashboards
           belong to a user or an organization and name an application only when
           linked to one;
        4. **identity**: a top-level reply schema none of the rules above touch would
           accept ``{}`` or an unrelated object (a proxy's ``{"message": ...}``), so
           its ``id`` (entities) or ``items`` (collections) is required.

        The fields rules 2 and 3 make required are listed in ``_record.json``
        (``required_by_rule``).
        """
        replies: set[str] = set()
        requests: set[str] = set()
        for resource in self.spec.catalog["resources"]:
            for action in resource["actions"]:
                for r in action["responses"]:
                    if r.get("schema") and 200 <= r["status"] < 300:
                        replies.add(self.top_names[r["schema"]])
                for e in action.get("sseEvents") or ():
                    if e.get("schema"):
                        replies.add(self.top_names[e["schema"]])
                for p in action["params"]:
                    if p.get("schema"):
                        requests.add(self.top_names[p["schema"]])
        to_reply, to_request = self._reachable(replies), self._reachable(requests)
        self._to_reply = to_reply
        by_name = {sd.name: sd for sd in self.structs}
        for sd in self.structs:
            in_reply = sd.name in to_reply
            for f in sd.fields:
                if not f.required or not in_reply:
                    continue
                if sd.name in to_request:
                    self.rules["required_kept_optional_request_struct"] += 1
                    self.kept_optional.append(f"{sd.name}.{f.py}")
                    continue
                f.enforced, f.reason = True, "schema"
                self.rules["required_enforced"] += 1
        self.response_structs = {n for n in to_reply - to_request if n in by_name}
        self.request_structs = {n for n in to_request if n in by_name}
        for sd in self.structs:
            if sd.path or sd.name not in self.response_structs:
                continue
            self._enforce_entity(sd)
        for name in sorted(replies - to_request):
            top = by_name.get(name)
            if top is None or top.path or any(f.enforced for f in top.fields):
                continue
            for f in top.fields:
                if f.wire in ("id", "items"):
                    f.enforced = f.inferred = True
                    f.reason = "identity"
                    self.rules[f"required_inferred_{f.wire}"] += 1

    def _enforce_entity(self, sd: StructDef) -> None:
        """Rules 2 and 3 of ``_enforce_required`` for one top-level reply-only Struct."""
        post = self.schemas.get(sd.schema + "Post")
        created = set((post or {}).get("required") or ())
        wires = {f.wire for f in sd.fields}
        assigned: set[str] = set()
        if "id" in wires:
            assigned = {"id", sd.schema + "Id", "applicationId", "creationDate", "lastUpdated"}
            assigned -= _NOT_ASSIGNED.get(sd.schema, set())
        for f in sd.fields:
            if f.enforced:
                continue
            if f.wire in assigned:
                f.enforced, f.reason = True, "server"
            elif f.wire in created:
                f.enforced, f.reason = True, "create"
            else:
                continue
            self.rules[f"required_{f.reason}"] += 1
            self.required_by_rule.setdefault(f.reason, []).append(f"{sd.name}.{f.py}")

    # -- queries used by the resource generator --------------------------------

    def struct_by_name(self, name: str) -> StructDef | None:
        return next((sd for sd in self.structs if sd.name == name), None)

    def type_of_schema(self, schema: str) -> TypeTree:
        return ("named", self.top_names[schema])

    def page_item(self, schema: str) -> TypeTree | None:
        """For a collection schema with an ``items`` array: the type of one item."""
        sd = self.struct_by_schema.get(schema)
        if sd is None:
            return None
        for f in sd.fields:
            if f.wire == "items":
                t = f.type
                if t[0] == "union":
                    lists = [m for m in t[1] if m[0] == "list"]
                    t = lists[0] if lists else t
                return t[1] if t[0] == "list" else None
        return None

    # -- rendering ----------------------------------------------------------------

    def _alias_order(self) -> list[AliasDef]:
        """Aliases are evaluated at import: each must come after the aliases it names."""
        order: list[AliasDef] = []
        state: dict[str, int] = {}

        def deps(t: TypeTree) -> set[str]:
            if t[0] == "named":
                return {t[1]} if t[1] in self.aliases else set()
            if t[0] in ("dict", "list"):
                return deps(t[1])
            if t[0] == "union":
                return set().union(*(deps(m) for m in t[1]))
            return set()

        def visit(name: str) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                raise ValueError(f"type aliases refer to each other in a cycle through {name}")
            state[name] = 1
            for d in sorted(deps(self.aliases[name].type)):
                visit(d)
            state[name] = 2
            order.append(self.aliases[name])

        for name in sorted(self.aliases):
            visit(name)
        return order

    def module_text(self, banner: str) -> str:
        out: list[str] = [banner]
        out.append('"""Msgspec Structs and type aliases for every JSON Schema of the Losant API."""\n\n')
        out.append("from __future__ import annotations\n\n")
        out.append("from typing import Any, TypeAlias, Union\n\n")
        out.append("from msgspec import UNSET, UnsetType, field\n\n")
        out.append("from .._model import AwareDatetime, LosantModel\n\n")
        public = sorted({*self.top_names.values(), *(sd.name for sd in self.structs)})
        out.append("__all__ = [\n    \"AwareDatetime\",\n    \"LosantModel\",\n")
        out.extend(f'    "{n}",\n' for n in public)
        out.append("]\n\n")
        for sd in self.structs:
            out.append(self._struct_text(sd))
        for ad in self._alias_order():
            out.append(f"{ad.name}: TypeAlias = {render(ad.type, runtime=True)}\n")
            facts = "; ".join(ad.facts)
            out.append(f'"""Schema `{ad.schema}`: {_esc(render(ad.type))}{"; " + _esc(facts) if facts else ""}."""\n\n')
        return "".join(out).rstrip("\n") + "\n"

    def _struct_text(self, sd: StructDef) -> str:
        where = f"schema `{sd.schema}`" if not sd.path else f"`{sd.path}` in schema `{sd.schema}`"
        lines = [f"\n\nclass {sd.name}(LosantModel, kw_only=True):\n"]
        if sd.name in self.response_structs:
            use = "replies"
        elif sd.name in self.request_structs:
            use = "request bodies and replies" if self._in_reply(sd.name) else "request bodies"
        else:
            use = "no action directly"
        doc = [f"The object at {where}, used in {use}." if sd.path else f"Schema `{sd.schema}`, used in {use}."]
        if sd.fields:
            doc.append("")
            doc.append("Fields (wire name: type). Always present: a reply without it raises DecodeError;")
            doc.append("every other field is UNSET when the reply leaves it out.")
            for f in sd.fields:
                extra = list(f.facts)
                if f.enforced:
                    extra.insert(0, _ALWAYS[f.reason])
                elif f.required:
                    extra.insert(0, "the schema requires it in requests; the server checks it")
                shown = f"; {'; '.join(extra)}" if extra else ""
                doc.append(f"- `{f.wire}`: {render(f.type)}{shown}")
        body = "\n".join(f"    {_esc(line)}".rstrip() if line else "" for line in doc).lstrip()
        lines.append(f'    """{body}\n    """\n\n')
        for f in sd.fields:
            if f.enforced:
                ann = render(f.type)
                if f.py == f.wire:
                    lines.append(f"    {f.py}: {ann}\n")
                else:
                    lines.append(f"    {f.py}: {ann} = field(name={json.dumps(f.wire)})\n")
                continue
            ann = "Any" if f.type == ANY else f"{render(f.type)} | UnsetType"
            if f.py == f.wire:
                lines.append(f"    {f.py}: {ann} = UNSET\n")
            else:
                lines.append(f"    {f.py}: {ann} = field(name={json.dumps(f.wire)}, default=UNSET)\n")
        if not sd.fields:
            lines.append("    pass\n")
        return "".join(lines)

    def record_counts(self) -> dict[str, int]:
        return {"structs": len(self.structs), "aliases": len(self.aliases)}


def _named(t: TypeTree) -> set[str]:
    """The names (Structs and aliases) a type refers to."""
    kind = t[0]
    if kind == "named":
        return {t[1]}
    if kind in ("dict", "list"):
        return _named(t[1])
    if kind == "union":
        return set().union(*(_named(m) for m in t[1]))
    return set()


_ALWAYS = {
    "schema": "always present",
    "create": "always present (creating the entity requires it)",
    "server": "always present (the server assigns it)",
    "identity": "always present (the entity's identity)",
}


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


