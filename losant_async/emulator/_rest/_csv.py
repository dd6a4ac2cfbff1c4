"""CSV cells as Losant's exports write them: ``true``/``false``, empty for null, JSON for objects, dates as ISO 8601."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from ... import _json

__all__ = ["csv_cell", "csv_row"]


def csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):  # before int: True is an int
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    if isinstance(value, (dict, list)):
        return _json.encode(value).decode()
    return str(value)


def csv_row(row: Mapping[str, Any]) -> dict[str, str]:
    return {k: csv_cell(v) for k, v in row.items()}
