"""The list parameters as the catalog documents them: accepted sort and filter fields, blank means no filtering, ``query`` overrides."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Protocol

from ...errors import ValidationError
from ._spec import action


class Call(Protocol):
    """What this module reads of a call (``_common.Call`` has it; not imported: ``_common`` uses this module)."""

    @property
    def route(self) -> Any: ...

    def q(self, name: str, default: str | None = None) -> str | None: ...

__all__ = ["ListParams", "filter_of", "list_params", "query_overrides", "sort_field"]

_ACCEPTED = re.compile(r"Accepted values are: (.*?)(?:\.\s|\.$|$)")


@dataclass(frozen=True, slots=True)
class ListParams:
    """What one list action's catalog entry says about its parameters."""

    sort_fields: tuple[str, ...] | None
    filter_fields: tuple[str, ...] | None
    sort_default: str | None
    query_overrides: bool
    """``query`` is a filter object that, given, replaces the simple filters (Losant: "overrides")."""
    has_filter_field: bool
    fixed_filter: str | None
    """The field ``filter`` applies to where the action has no ``filterField`` ("against event subjects")."""


def _accepted(description: str | None) -> tuple[str, ...] | None:
    found = _ACCEPTED.search(description or "")
    if found is None:
        return None
    return tuple(v.strip() for v in found.group(1).split(",") if v.strip())


@functools.cache
def list_params(full_name: str) -> ListParams:
    entry = action(full_name)
    params = {p["name"]: p for p in entry["params"]} if entry is not None else {}
    query = params.get("query", {})
    return ListParams(
        sort_fields=_accepted(params.get("sortField", {}).get("description")),
        filter_fields=_accepted(params.get("filterField", {}).get("description")),
        sort_default=params.get("sortField", {}).get("default"),
        query_overrides="overrides" in (query.get("description") or ""),
        has_filter_field="filterField" in params,
        fixed_filter=_fixed(params.get("filter", {}).get("description")),
    )


def _fixed(description: str | None) -> str | None:
    found = re.search(r"against event (\w+)s\b", description or "")
    return found.group(1) if found else None


def query_overrides(call: Call) -> bool:
    """A ``query`` was given to an action whose ``query`` overrides its simple filters."""
    return list_params(call.route.full_name).query_overrides and bool(call.q("query"))


def filter_of(call: Call) -> tuple[str, str] | None:
    """``(field, glob)`` to filter by, or None: a blank ``filterField`` or ``filter`` means no
    filtering (the catalog's words), as does a ``query`` that overrides them."""
    field, pattern = call.q("filterField") or "", call.q("filter") or ""
    params = list_params(call.route.full_name)
    if not params.has_filter_field and pattern:
        field = params.fixed_filter or ""  # events.mostRecentBySeverity: "Filter to apply against event subjects"
    if not field or not pattern or query_overrides(call):
        return None
    accepted = params.filter_fields
    if accepted is not None and field not in accepted:
        raise ValidationError(f"filterField must be one of {', '.join(accepted)}, not {field!r}")
    return field, pattern


def sort_field(call: Call, default: str) -> str:
    """``sortField``, checked against the accepted values the catalog lists."""
    params = list_params(call.route.full_name)
    field = call.q("sortField") or params.sort_default or default
    accepted = params.sort_fields
    if accepted is not None and field not in accepted and call.q("sortField"):
        raise ValidationError(f"sortField must be one of {', '.join(accepted)}, not {field!r}")
    return field
