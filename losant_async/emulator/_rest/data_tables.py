"""Emulated data tables: columns, rows (insert, query, patch, delete, truncate) and CSV export."""

from __future__ import annotations

import copy
import csv
import io
from typing import Any

from aiohttp import web

from ...errors import ValidationError
from .._query import doc_matches
from ..store import BlobRecord, new_id
from . import _engine
from ._common import Call, Handler, HttpError, Server, iso
from ._csv import csv_row

_ROW_META = ("id", "createdAt", "updatedAt")


def sort_key(value: Any) -> tuple[bool, int, Any]:
    """Numbers by value, everything else as text; never compares a number with a string."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return False, 0, value
    return value is None, 1, "" if value is None else str(value)


def rows_of(srv: Server, table_id: str) -> dict[str, dict[str, Any]]:
    """A table's rows by id (kept apart from the table so row columns never collide with parent ids)."""
    return srv.store.docs.setdefault(f"rows:{table_id}", {})


def _table(srv: Server, call: Call) -> dict[str, Any]:
    return _engine.require(srv, _engine.kinds()["data_tables"], call.params)


def _check_value(column: dict[str, Any], value: Any) -> Any:
    kind = column.get("dataType")
    name = column.get("name")
    if value is None:
        return None
    ok = (
        (kind == "number" and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (kind == "boolean" and isinstance(value, bool))
        or (kind == "string" and isinstance(value, str))
    )
    if not ok:
        raise ValidationError(f"{name}: column is a {kind}, not {type(value).__name__}")
    return value


def _validated(table: dict[str, Any], rows: dict[str, dict[str, Any]], values: Any, *, existing: dict[str, Any] | None = None) -> dict[str, Any]:
    """The row's column values checked against the table's columns (types, required, unique)."""
    if not isinstance(values, dict):
        raise ValidationError("a row must be an object of column values")
    columns = {c["name"]: c for c in table.get("columns", []) if isinstance(c, dict) and "name" in c}
    unknown = [k for k in values if k not in columns and k not in _ROW_META]
    if unknown:
        raise ValidationError(f"{unknown[0]}: no such column in this data table")
    out = {} if existing is None else {k: v for k, v in existing.items() if k in columns}
    for name, column in columns.items():
        if name in values:
            out[name] = _check_value(column, values[name])
        elif existing is None and "defaultValue" in column:
            out[name] = column["defaultValue"]
        if column.get("constraint") in ("required", "unique") and out.get(name) is None:
            raise ValidationError(f"{name}: a value is required")
        if column.get("constraint") == "unique" and out.get(name) is not None:
            own = existing.get("id") if existing else None
            if any(r.get(name) == out[name] and r["id"] != own for r in rows.values()):
                raise ValidationError(f"{name}: value {out[name]!r} is already in the table (unique column)")
    return out


async def rows_post(srv: Server, call: Call) -> web.Response:
    """One row or a list of rows; all are checked before any is stored."""
    table = _table(srv, call)
    rows = rows_of(srv, table["id"])
    body = call.body
    many = isinstance(body, list)
    staged: dict[str, dict[str, Any]] = {}
    now = iso(srv.store.clock())
    for values in body if many else [body]:
        checked = _validated(table, {**rows, **staged}, values)
        row_id = new_id()
        staged[row_id] = {"id": row_id, "createdAt": now, "updatedAt": now, **checked}
    rows.update(staged)
    created = [copy.deepcopy(r) for r in staged.values()]
    return _engine.reply(call.route.full_name, created if many else created[0])


def _select(srv: Server, call: Call, table: dict[str, Any], query: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows = [r for r in rows_of(srv, table["id"]).values() if doc_matches(r, query)]
    column = call.q("sortColumn") or "createdAt"
    direction = (call.q("sortDirection") or "asc").lower()
    if direction not in ("asc", "desc"):
        raise ValidationError("sortDirection must be asc or desc")
    rows.sort(key=lambda r: sort_key(r.get(column)), reverse=direction == "desc")
    limit, offset = call.int_q("limit", 1000), call.int_q("offset", 0)
    if limit < 0 or offset < 0:
        raise ValidationError("limit and offset must not be negative")
    chunk = rows[offset : offset + limit]
    fields = [f for f in (call.q("includeFields") or "").split(",") if f]
    if fields:
        chunk = [{k: v for k, v in r.items() if k in fields or k == "id"} for r in chunk]
    meta = {
        "count": len(chunk),
        "totalCount": len(rows),
        "limit": limit,
        "offset": offset,
        "sortColumn": column,
        "sortDirection": direction,
        "dataTableId": table["id"],
        "applicationId": table["applicationId"],
    }
    return [copy.deepcopy(r) for r in chunk], meta


async def rows_get(srv: Server, call: Call) -> web.Response:
    table = _table(srv, call)
    items, meta = _select(srv, call, table, None)
    return _engine.reply(call.route.full_name, {"items": items, **meta})


async def rows_query(srv: Server, call: Call) -> web.Response:
    table = _table(srv, call)
    query = _engine.check_body(call)
    items, meta = _select(srv, call, table, query)
    return _engine.reply(call.route.full_name, {"items": items, **meta, "query": query or {}})


async def rows_delete(srv: Server, call: Call) -> web.Response:
    table = _table(srv, call)
    query = _engine.check_body(call)
    rows = rows_of(srv, table["id"])
    limit = call.int_q("limit", 1000)
    doomed = [r["id"] for r in rows.values() if doc_matches(r, query)][:limit]
    for row_id in doomed:
        del rows[row_id]
    return _engine.reply(call.route.full_name, {"removed": len(doomed)})


async def rows_truncate(srv: Server, call: Call) -> web.Response:
    rows_of(srv, _table(srv, call)["id"]).clear()
    return _engine.reply(call.route.full_name, {"success": True})


async def rows_export(srv: Server, call: Call) -> web.Response:
    """The matching rows as CSV, served by the emulator; the job log's output gives its URL."""
    table = _table(srv, call)
    body = _engine.check_body(call) or {}
    query = body.get("query") if isinstance(body, dict) else None
    rows = [r for r in rows_of(srv, table["id"]).values() if doc_matches(r, query)]
    columns = ["id", "createdAt", "updatedAt", *[c["name"] for c in table.get("columns", [])]]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(csv_row(r) for r in rows)
    blob_id = new_id()
    srv.store.blobs[blob_id] = BlobRecord(f"{table['name']}.csv", "text/csv", text.getvalue().encode())
    url = f"{srv.base_url}/_emulator/blobs/{blob_id}"
    result = _engine.job(srv, call, f"Data table export: {table['name']}", result={"url": url, "rows": len(rows)})
    return _engine.reply(call.route.full_name, result)


def _row(srv: Server, call: Call) -> tuple[dict[str, Any], dict[str, Any]]:
    table = _table(srv, call)
    row = rows_of(srv, table["id"]).get(call.params["rowId"])
    if row is None:
        raise HttpError(404, "NotFound", "Data table row was not found")
    return table, row


async def row_get(srv: Server, call: Call) -> web.Response:
    return _engine.reply(call.route.full_name, copy.deepcopy(_row(srv, call)[1]))


async def row_patch(srv: Server, call: Call) -> web.Response:
    table, row = _row(srv, call)
    rows = rows_of(srv, table["id"])
    checked = _validated(table, rows, call.body, existing=row)
    row.update(checked)
    row["updatedAt"] = iso(srv.store.clock())
    return _engine.reply(call.route.full_name, copy.deepcopy(row))


async def row_delete(srv: Server, call: Call) -> web.Response:
    table, row = _row(srv, call)
    del rows_of(srv, table["id"])[row["id"]]
    return _engine.reply(call.route.full_name, {"success": True})


async def add_column(srv: Server, call: Call) -> web.Response:
    table = _table(srv, call)
    column = _engine.check_body(call)
    if not isinstance(column, dict):
        raise ValidationError("a column is an object with name, dataType and constraint")
    if any(c.get("name") == column["name"] for c in table.get("columns", [])):
        raise ValidationError(f"name: column {column['name']} already exists")
    table.setdefault("columns", []).append(copy.deepcopy(column))
    if "defaultValue" in column:
        for row in rows_of(srv, table["id"]).values():
            row.setdefault(column["name"], column["defaultValue"])
    table["lastUpdated"] = iso(srv.store.clock())
    return _engine.reply(call.route.full_name, copy.deepcopy(table))


async def remove_column(srv: Server, call: Call) -> web.Response:
    table = _table(srv, call)
    name = call.q("columnName")
    if not name:
        raise ValidationError("columnName is required")
    before = len(table.get("columns", []))
    table["columns"] = [c for c in table.get("columns", []) if c.get("name") != name]
    if len(table["columns"]) == before:
        raise HttpError(404, "NotFound", f"Column {name} was not found")
    for row in rows_of(srv, table["id"]).values():
        row.pop(name, None)
    table["lastUpdated"] = iso(srv.store.clock())
    return _engine.reply(call.route.full_name, copy.deepcopy(table))


def row_exists(srv: Server, params: Any) -> bool:
    return params.get("rowId", "") in rows_of(srv, params.get("dataTableId", ""))


HANDLERS: dict[str, Handler] = {
    "data_table_rows.post": rows_post,
    "data_table_rows.get": rows_get,
    "data_table_rows.query": rows_query,
    "data_table_rows.delete": rows_delete,
    "data_table_rows.truncate": rows_truncate,
    "data_table_rows.export": rows_export,
    "data_table_row.get": row_get,
    "data_table_row.patch": row_patch,
    "data_table_row.delete": row_delete,
    "data_table.add_column": add_column,
    "data_table.remove_column": remove_column,
}
