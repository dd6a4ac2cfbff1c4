"""Path parameters checked against the catalog's patterns: a malformed id is Losant's 400 Validation, not a 404."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

from ...errors import ValidationError
from ._spec import action

__all__ = ["check_path_params"]


@functools.cache
def _patterns(full_name: str) -> tuple[tuple[str, re.Pattern[str]], ...]:
    entry = action(full_name)
    if entry is None:
        return ()
    return tuple((p["name"], re.compile(p["pattern"])) for p in entry["params"] if p["in"] == "path" and p.get("pattern"))


def check_path_params(full_name: str, params: Mapping[str, str]) -> None:
    """ValidationError naming the first path parameter that does not match its documented pattern."""
    for name, pattern in _patterns(full_name):
        value = params.get(name)
        if value is not None and pattern.search(value) is None:
            raise ValidationError(f"{name}: {value[:64]!r} does not match the pattern {pattern.pattern}")
