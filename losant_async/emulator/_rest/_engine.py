"""The catalog-driven resource engine: generic collections and items, and a schema-complete answer for the rest.

Every ``<plural>`` resource with ``get``/``post`` at a path and a ``<singular>``
resource at ``<path>/{id}`` is a *kind*. The engine stores its objects as
documents (Losant's 24-hex ids, ``creationDate``/``lastUpdated``, the ids of
their parents), lists them with ``page``/``perPage``/``sortField``/
``sortDirection``/``filterField``/``filter``, merges patches, deletes with
their children, and answers 404 ``NotFound`` for a missing parent or item.
Actions with no handler of their own get a reply built from their response
schema over the stored object (``success``, queued jobs that complete, the
item itself for item-shaped replies).
"""

from __future__ import annotations

import copy
import functools
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ...errors import ValidationError
from .._query import doc_matches, wildcard_match
from .._routes import Route, load_routes
from ..store import Store, new_id
from . import _spec
from ._app_doc import app_json
from ._common import Call, HttpError, Server, iso, json_response
from ._listing import filter_of, query_overrides, sort_field

__all__ = [
    "Kind",
    "body_schema",
    "generic_handler",
    "kind_for_route",
    "kinds",
    "new_doc",
    "parents_of",
    "reply",
    "response_for",
]

_PLACEHOLDER = re.compile(r"^\{(\w+)\}$")

# objects reachable under two paths are one collection
_SHARED = {"application_dashboards": "dashboards", "instance_orgs": "orgs"}


@dataclass(frozen=True, slots=True)
class Kind:
    """A collection/item pair of the catalog."""

    name: str
    """The collection resource (``data_tables``), also where its documents are stored."""
    item: str
    path: str
    item_path: str
    id_param: str
    parents: tuple[str, ...]
    item_schema: str | None
    list_schema: str | None

    @property
    def storage(self) -> str:
        return _SHARED.get(self.name, self.name)

    @property
    def id_field(self) -> str | None:
        """The item's own-id field besides ``id`` (``dataTableId``), when its schema has one."""
        props = (_spec.schema(self.item_schema) or {}).get("properties", {})
        if self.id_param in props and self.id_param not in self.parents:
            return self.id_param
        if self.id_param.endswith("IdOrName"):
            name = self.id_param.removesuffix("OrName")
            return name if name in props else None
        return None


def response_for(full_name: str) -> tuple[int, str | None]:
    """The action's first documented success status and its schema."""
    entry = _spec.action(full_name)
    if entry is None or not entry["responses"]:
        return 200, None
    first = entry["responses"][0]
    return int(first["status"]), first["schema"]


def body_schema(full_name: str) -> str | None:
    entry = _spec.action(full_name)
    if entry is None:
        return None
    return next((p["schema"] for p in entry["params"] if p["in"] == "body"), None)


def param_default(full_name: str, name: str) -> str | None:
    entry = _spec.action(full_name)
    if entry is None:
        return None
    return next((p.get("default") for p in entry["params"] if p["name"] == name), None)


def _segments(path: str) -> list[str]:
    return path.strip("/").split("/")


@functools.cache
def _kinds() -> dict[str, Kind]:
    routes = load_routes().routes
    by_name = {r.full_name: r for r in routes}
    collections: dict[str, str] = {}
    for route in routes:
        if route.action in ("get", "post") and route.resource.endswith("s") and "{" not in route.path.rsplit("/", 1)[-1]:
            collections.setdefault(route.path, route.resource)
    out: dict[str, Kind] = {}
    for route in routes:
        if route.action != "get":
            continue
        head, _, last = route.path.rpartition("/")
        match = _PLACEHOLDER.match(last)
        if match is None or head not in collections:
            continue
        plural = collections[head]
        list_route = by_name.get(f"{plural}.get")
        out[plural] = Kind(
            name=plural,
            item=route.resource,
            path=head,
            item_path=route.path,
            id_param=match.group(1),
            parents=tuple(_PLACEHOLDER.match(s).group(1) for s in _segments(head) if _PLACEHOLDER.match(s)),  # type: ignore[union-attr]
            item_schema=response_for(route.full_name)[1],
            list_schema=response_for(list_route.full_name)[1] if list_route is not None else None,
        )
    # application files: listed at .../files, each one at .../file/{fileId}
    files_list, file_get = by_name.get("files.get"), by_name.get("file.get")
    if files_list is not None and file_get is not None:
        out["files"] = Kind(
            name="files",
            item="file",
            path=files_list.path,
            item_path=file_get.path,
            id_param="fileId",
            parents=("applicationId",),
            item_schema=response_for(file_get.full_name)[1],
            list_schema=response_for(files_list.full_name)[1],
        )
    return out


def kinds() -> Mapping[str, Kind]:
    return _kinds()


@functools.cache
def _by_resource() -> dict[str, Kind]:
    out: dict[str, Kind] = {}
    for kind in _kinds().values():
        out[kind.name] = kind
        out[kind.item] = kind
    return out


def kind_for_route(route: Route) -> Kind | None:
    """The kind whose collection or item the route's resource is."""
    return _by_resource().get(route.resource)


@functools.cache
def _path_kinds(path: str) -> tuple[Kind, ...]:
    """The kinds whose items the path goes through, outermost first (for 404 checks)."""
    segments = _segments(path)
    found = []
    for kind in _kinds().values():
        item = _segments(kind.item_path)
        if len(item) <= len(segments) and segments[: len(item)] == item:
            found.append(kind)
    found.sort(key=lambda k: len(_segments(k.item_path)))
    return tuple(found)


def path_kinds(route: Route) -> tuple[Kind, ...]:
    return _path_kinds(route.path)


def parents_of(kind: Kind, params: Mapping[str, str]) -> dict[str, str]:
    return {p: params[p] for p in kind.parents if p in params}


# -- documents -------------------------------------------------------------------------------


def docs(srv: Server, kind: Kind) -> dict[str, dict[str, Any]]:
    return srv.store.docs.setdefault(kind.storage, {})


def scoped(srv: Server, kind: Kind, params: Mapping[str, str]) -> list[dict[str, Any]]:
    parents = parents_of(kind, params)
    return [d for d in docs(srv, kind).values() if all(d.get(k) == v for k, v in parents.items())]


def find(srv: Server, kind: Kind, params: Mapping[str, str]) -> dict[str, Any] | None:
    wanted = params.get(kind.id_param)
    if wanted is None:
        return None
    store = docs(srv, kind)
    doc = store.get(wanted)
    if doc is None and kind.id_param.endswith("IdOrName"):
        doc = next((d for d in scoped(srv, kind, params) if d.get("name") == wanted or d.get("version") == wanted), None)
    if doc is None:
        return None
    if any(doc.get(k) != v for k, v in parents_of(kind, params).items()):
        return None
    return doc


def label(kind: Kind) -> str:
    words = re.sub(r"(?<!^)(?=[A-Z])", " ", (kind.item_schema or kind.item).replace("_", " "))
    return words[:1].upper() + words[1:].lower()


def new_doc(store: Store, kind: Kind, params: Mapping[str, str], body: Mapping[str, Any]) -> dict[str, Any]:
    """Store a new object of ``kind`` under the path's parents; returns the stored document."""
    now = iso(store.clock())
    doc: dict[str, Any] = dict(copy.deepcopy(body))
    doc_id = new_id()
    own = body.get(kind.id_param)
    if (kind.id_field is None or kind.id_param == "userId") and isinstance(own, str) and own:
        doc_id = own  # members are known by their user's id (which must stay the user's)
    doc["id"] = doc_id
    if kind.id_field is not None:
        doc[kind.id_field] = doc_id
    doc.update(parents_of(kind, params))
    doc.setdefault("creationDate", now)
    doc["lastUpdated"] = now
    if kind.item_schema is not None:
        doc = _spec.fill(kind.item_schema, doc)
    store.docs.setdefault(kind.storage, {})[doc_id] = doc
    return doc


def remove_doc(srv: Server, kind: Kind, doc: Mapping[str, Any]) -> None:
    """Delete one object and, recursively, every object stored under it."""
    docs(srv, kind).pop(doc["id"], None)
    srv.store.docs.pop(f"rows:{doc['id']}", None)  # a data table's rows are stored beside it
    srv.store.docs.get("flow_storage", {}).pop(doc["id"], None)
    cascade(srv, kind.id_param, doc["id"])


# Records kept beside the documents (executions, logs), dropped with the object they belong to.
_SIDE_RECORDS = {
    "notebook_executions": ("notebookId", "applicationId"),
    "resource_job_executions": ("resourceJobId", "applicationId"),
    "application_import_logs": ("applicationId",),
}


def cascade(srv: Server, param: str, value: str) -> None:
    for store_name, fields in _SIDE_RECORDS.items():
        if param in fields:
            records = srv.store.docs.get(store_name, {})
            for record_id in [k for k, r in records.items() if r.get(param) == value]:
                del records[record_id]
    if param == "flowId":
        srv.store.docs.get("flow_logs", {}).pop(value, None)
    for other in _kinds().values():
        if param not in other.parents:
            continue
        for child in [d for d in docs(srv, other).values() if d.get(param) == value]:
            remove_doc(srv, other, child)


# -- replies ---------------------------------------------------------------------------------------


def reply(full_name: str, body: Any, status: int | None = None) -> web.Response:
    """``body`` completed with every field the action's response schema requires."""
    default_status, schema_name = response_for(full_name)
    use = default_status if status is None else status
    entry = _spec.action(full_name)
    if entry is not None and status is not None:
        schema_name = next((r["schema"] for r in entry["responses"] if r["status"] == status), schema_name)
    if schema_name is not None:
        body = _spec.project(schema_name, _spec.fill(schema_name, body))
    return json_response(body, use)


def check_body(call: Call) -> Any:
    name = body_schema(call.route.full_name)
    body = call.body
    if name is not None:
        _spec.validate(name, {} if body is None else body)
    return body


def _sort_key(field: str) -> Callable[[dict[str, Any]], tuple[bool, str]]:
    def key(item: dict[str, Any]) -> tuple[bool, str]:
        value: Any = item
        for part in field.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value is None, str(value if value is not None else "")

    return key


def list_page(call: Call, items: list[dict[str, Any]], *, default_sort: str = "name", default_dir: str = "asc") -> dict[str, Any]:
    """Filter (glob), sort and page ``items`` the way Losant's list actions do (see ``_listing``)."""
    name = call.route.full_name
    chosen = filter_of(call)
    if chosen is not None:
        items = [i for i in items if wildcard_match(chosen[1], str(i.get(chosen[0], "")))]
    if query_overrides(call):
        query = call.json_q("query")
        items = [i for i in items if doc_matches(i, query)]
    field = sort_field(call, default_sort)
    direction = (call.q("sortDirection") or param_default(name, "sortDirection") or default_dir).lower()
    if direction not in ("asc", "desc"):
        raise ValidationError("sortDirection must be asc or desc")
    items = sorted(items, key=_sort_key(field), reverse=direction == "desc")
    page = call.int_q("page", 0)
    per_page = call.int_q("perPage", int(param_default(name, "perPage") or 100))
    if page < 0 or per_page < 1 or per_page > 1000:
        raise ValidationError("page must be >= 0 and perPage 1 to 1000")
    chunk = items[page * per_page : (page + 1) * per_page]
    out: dict[str, Any] = {
        "items": chunk,
        "count": len(chunk),
        "totalCount": len(items),
        "perPage": per_page,
        "page": page,
        "sortField": field,
        "sortDirection": direction,
    }
    if chosen is not None:
        out["filterField"], out["filter"] = chosen
    return out


# -- generic handlers ----------------------------------------------------------------------------


def require(srv: Server, kind: Kind, params: Mapping[str, str]) -> dict[str, Any]:
    doc = find(srv, kind, params)
    if doc is None:
        raise HttpError(404, "NotFound", f"{label(kind)} was not found")
    return doc


async def collection_get(srv: Server, call: Call, kind: Kind) -> web.Response:
    items = [copy.deepcopy(d) for d in scoped(srv, kind, call.params)]
    page = list_page(call, items)
    page.update(parents_of(kind, call.params))
    return reply(call.route.full_name, page)


async def collection_post(srv: Server, call: Call, kind: Kind) -> web.Response:
    body = check_body(call)
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    doc = new_doc(srv.store, kind, call.params, body)
    return reply(call.route.full_name, copy.deepcopy(doc))


async def item_get(srv: Server, call: Call, kind: Kind) -> web.Response:
    return reply(call.route.full_name, copy.deepcopy(require(srv, kind, call.params)))


async def item_patch(srv: Server, call: Call, kind: Kind) -> web.Response:
    doc = require(srv, kind, call.params)
    body = check_body(call)
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    protected = {"id", kind.id_field, *kind.parents, "creationDate"}
    doc.update({k: copy.deepcopy(v) for k, v in body.items() if k not in protected})
    doc["lastUpdated"] = iso(srv.store.clock())
    return reply(call.route.full_name, copy.deepcopy(doc))


async def item_delete(srv: Server, call: Call, kind: Kind) -> web.Response:
    doc = require(srv, kind, call.params)
    remove_doc(srv, kind, doc)
    return reply(call.route.full_name, {"success": True})


def job(
    srv: Server,
    call: Call,
    name: str | None = None,
    *,
    result: Mapping[str, Any] | None = None,
    status: str = "completed",
    error: str | None = None,
) -> dict[str, Any]:
    """A job Losant would queue, logged in the application's job logs.

    ``status`` is what the emulator did: ``completed`` when the work was done at once, ``queued``
    when it records work it cannot run (no mail, no workflow engine), ``failed`` with ``error``."""
    job_id = secrets.token_hex(10)  # jobEnqueuedResult.jobId is at most 21 characters
    app_id = call.params.get("applicationId")
    logs = _kinds().get("application_job_logs")
    if app_id is not None and logs is not None:
        now = iso(srv.store.clock())
        done = status == "completed"
        entry: dict[str, Any] = {
            "name": name or call.route.full_name,
            "status": status,
            "runQueuedAt": now,
            "ownerType": "application",
            "ownerId": app_id,
            "progress": {"completed": 1 if done else 0, "total": 1, "status": status},
        }
        if status != "queued":
            entry.update(runStartedAt=now, runCompletedAt=now)
        if call.token is not None:
            entry["requestedById"] = call.token.user_id or call.token.id
            entry["requestedByType"] = "user" if call.token.kind == "user" else "apiToken"
        if result:
            entry["output"] = dict(result)
        if error:
            entry["error"] = {"name": "EmulatorNotRun", "message": error}
        new_doc(srv.store, logs, {"applicationId": app_id}, entry)
    return {"jobQueued": True, "jobId": job_id, "success": True}


async def other(srv: Server, call: Call) -> web.Response:
    """Any other action: the body checked against its schema, a reply built from the response schema."""
    name = call.route.full_name
    body = check_body(call)
    # the list parameters are checked even where nothing is listed (metering reads, summaries)
    sort_field(call, "name")
    filter_of(call)
    if (call.q("sortDirection") or "asc").lower() not in ("asc", "desc"):
        raise ValidationError("sortDirection must be asc or desc")
    status, schema_name = response_for(name)
    inner = path_kinds(call.route)
    target = find(srv, inner[-1], call.params) if inner else None
    if schema_name == "success":
        out: Any = {"success": True}
    elif schema_name == "jobEnqueuedResult":
        out = job(srv, call)
    elif inner and inner[-1].name == "applications" and schema_name == "application":
        out = app_json(srv, call.params["applicationId"])
    elif target is not None and inner and schema_name == inner[-1].item_schema:
        if call.route.method == "PATCH" and isinstance(body, dict):
            target.update(copy.deepcopy(body))
            target["lastUpdated"] = iso(srv.store.clock())
        out = copy.deepcopy(target)
    else:
        out = {} if schema_name is None or "array" not in _schema_types(schema_name) else []
    return reply(name, out, status)


def _schema_types(name: str) -> list[str]:
    node = _spec.schema(name) or {}
    kind = node.get("type")
    return [kind] if isinstance(kind, str) else list(kind or [])


def generic_handler(route: Route) -> Callable[[Server, Call], Any]:
    """The engine's handler for a route: CRUD for kinds, the schema-built reply otherwise."""
    kind = kind_for_route(route)
    if kind is not None:
        if route.resource == kind.name and route.path == kind.path:
            if route.action == "get":
                return lambda srv, call: collection_get(srv, call, kind)
            if route.action == "post":
                return lambda srv, call: collection_post(srv, call, kind)
        if route.resource == kind.item and route.path == kind.item_path:
            if route.action == "get":
                return lambda srv, call: item_get(srv, call, kind)
            if route.action == "patch":
                return lambda srv, call: item_patch(srv, call, kind)
            if route.action == "delete":
                return lambda srv, call: item_delete(srv, call, kind)
    return other
