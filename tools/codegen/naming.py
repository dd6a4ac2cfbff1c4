"""Turning API names (camelCase, ``_links``, ``$and``) into Python identifiers."""

from __future__ import annotations

import keyword
import re

__all__ = ["pascal", "py_identifier", "snake"]

_ACRONYM = re.compile(r"([A-Z]+)([A-Z][a-z])")
_CAMEL = re.compile(r"([a-z\d])([A-Z])")
_NON_IDENT = re.compile(r"[^0-9a-zA-Z_]+")

# Names that would shadow a type used in the generated annotations inside a class
# body (mypy resolves ``str`` in a later annotation to the field), or a helper.
_SHADOWING = frozenset({"str", "int", "float", "bool", "list", "dict", "field", "Any", "UNSET", "UnsetType"})


def snake(name: str) -> str:
    """``experienceVersionIdOrName`` -> ``experience_version_id_or_name``; ``urlTTL`` -> ``url_ttl``."""
    s = _ACRONYM.sub(r"\1_\2", name)
    s = _CAMEL.sub(r"\1_\2", s)
    s = _NON_IDENT.sub("_", s).lower()
    return re.sub(r"_+", "_", s).strip("_")


def py_identifier(wire: str) -> str:
    """A snake_case attribute/argument name for ``wire``, never a keyword or a shadowing name."""
    s = snake(wire)
    if not s:
        s = "field"
    if s[0].isdigit():
        s = "f_" + s
    if keyword.iskeyword(s) or s in _SHADOWING:
        s += "_"
    return s


def pascal(name: str) -> str:
    """``deviceStateOrStates`` -> ``DeviceStateOrStates``; ``_links`` -> ``Links``; ``$and`` -> ``And``."""
    parts = [p for p in _NON_IDENT.sub("_", name).split("_") if p]
    out = "".join(p[0].upper() + p[1:] for p in parts)
    if not out:
        return "Field"
    if out[0].isdigit():
        out = "N" + out
    return out
