"""Catalog resources -> one module per resource with its ``Operation`` constants and typed methods."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from losant_async.errors import error_for_status

from .models import NONE, ModelBuilder, TypeTree, render
from .naming import py_identifier

__all__ = ["ActionInfo", "ResourceWriter"]

_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "OPTIONS"})
_STATE_SCHEMAS = frozenset({"deviceStateOrStates", "deviceState"})
_RESERVED = frozenset({"self", "raw", "request_options"})


@dataclass
class ActionInfo:
    """What the generator decided about one action (for counts and tests)."""

    resource: str
    action: str
    paginated: bool
    sse: bool
    multipart: bool
    accepted: bool
    """May answer 202."""


class ResourceWriter:
    """Renders resource modules; ``actions`` collects what each action turned out to be."""

    def __init__(self, models: ModelBuilder) -> None:
        self.models = models
        self.actions: list[ActionInfo] = []
        self.rules: Counter[str] = Counter()

    def _schema_type(self, schema: str | None) -> TypeTree:
        return NONE if schema is None else self.models.type_of_schema(schema)

    def _param_type(self, p: dict[str, Any]) -> str:
        enum: list[Any] = p.get("enum") or []
        string_enum = bool(enum) and all(isinstance(v, str) for v in enum)
        if string_enum and p["in"] in ("query", "multipart") and p["type"] in ("string", "undefined"):
            self.rules["enum_param_literal"] += 1
            return f"Literal[{', '.join(repr(v) for v in enum)}]"
        kind, where, schema = p["type"], p["in"], p.get("schema")
        named = f"m.{self.models.top_names[schema]} | " if schema else ""
        if where == "path":
            return "str"
        if where == "multipart":
            if kind == "file":
                return "FileInput"
            if kind == "hash":
                return f"{named}Mapping[str, Any]"
            return "str"
        if kind == "boolean":
            return "bool"
        if kind == "undefined":
            return "Any"
        if where == "body":
            return f"{named}Mapping[str, Any] | Sequence[Any]"
        if kind == "array":
            return "Sequence[Any]"
        if kind == "hash":
            if p.get("serialize") == "json":
                return f"{named}Mapping[str, Any]"
            return f"{named}Mapping[str, Any] | Sequence[Any]"
        return "str | int | float | bool"

    def module_text(self, banner: str, resource: dict[str, Any]) -> str:
        res_name = resource["name"]
        cls = f"{resource['className']}Resource"
        header = [
            banner,
            f'"""The `{res_name}` resource: {len(resource["actions"])} actions of the Losant API."""\n\n',
            "from __future__ import annotations\n\n",
            "from collections.abc import Mapping, Sequence\n",
            "from typing import Any, Literal, overload\n\n",
            "from ..._operation import FileInput, Operation, Param, UploadSource\n",
            "from ..._resource import Resource\n",
            "from ...options import RequestOptions\n",
            "from ...pagination import Paginator\n",
            "from ...sse import EventStream\n",
            "from .. import models as m\n\n",
            f'__all__ = ["OPERATIONS", "{cls}"]\n\n',
        ]
        consts: list[str] = []
        methods: list[str] = []
        for action in resource["actions"]:
            const, method = self._action(res_name, action)
            consts.append(const)
            methods.append(method)
        upload = self._upload_method(resource)
        if upload is not None:
            header.insert(header.index("from ..._resource import Resource\n"), upload[0])
            methods.append(upload[1])
        replace = self._replace_method(resource)
        if replace is not None:
            methods.append(replace)
        names = ", ".join(f"_{a['name'].upper()}" for a in resource["actions"])
        trailer = "," if len(resource["actions"]) == 1 else ""
        body = [
            *consts,
            f"OPERATIONS: tuple[Operation, ...] = ({names}{trailer})\n\n\n",
            f"class {cls}(Resource):\n",
            f'    """The `{res_name}` actions (API name `{resource["apiName"]}`)."""\n\n',
            "    __slots__ = ()\n",
            *methods,
        ]
        return "".join(header + body).rstrip("\n") + "\n"

    def _upload_target_schema(self, schema: str | None) -> bool:
        """A reply that carries a presigned upload: ``upload.url`` and ``upload.fields``."""
        sd = self.models.struct_by_schema.get(schema or "")
        if sd is None:
            return False
        upload = next((f for f in sd.fields if f.wire == "upload"), None)
        target = self.models.struct_by_name(upload.type[1]) if upload is not None and upload.type[0] == "named" else None
        return target is not None and {"url", "fields"} <= {f.wire for f in target.fields}

    def _upload_method(self, resource: dict[str, Any]) -> tuple[str, str] | None:
        """``upload``: the import of the item's ``get`` and the method, for a collection whose
        ``post`` answers a presigned upload target (``files``, ``private_files``)."""
        post = next((a for a in resource["actions"] if a["name"] == "post" and a["method"] == "POST"), None)
        if post is None or any(a["name"] == "upload" for a in resource["actions"]):
            return None
        if not any(self._upload_target_schema(r.get("schema")) for r in post["responses"] if 200 <= r["status"] < 300):
            return None
        # The item resource is the collection's singular (files -> file), as everywhere in the catalog.
        item = next(
            ((r, a) for r in self.models.spec.catalog["resources"] if r["name"] == resource["name"].removesuffix("s")
             for a in r["actions"] if a["name"] == "get"),
            None,
        )
        if item is None:
            return None
        other, get = item
        schema = next(r["schema"] for r in get["responses"] if 200 <= r["status"] < 300)
        ret = render(self.models.type_of_schema(schema), "m.")
        self.rules["upload_method"] += 1
        doc = (
            f"Create a file and upload its content in one call: `{resource['name']}.post`, then the POST of\n"
            f"        the bytes to the reply's `upload` target, then `{other['name']}.get` until Losant reports\n"
            "        the file no longer pending.\n\n"
            "        Args:\n"
            "            source: the content (bytes) or the path of a file (str or PathLike), streamed from\n"
            "                disk in chunks, never read whole.\n"
            "            application_id: the application (24 hexadecimal characters).\n"
            "            name: the file's name; a path's base name when left out (required for bytes).\n"
            "            parent_directory: the directory to put it in (Losant's default: the root).\n"
            "            content_type: its MIME type; guessed from the name when left out.\n"
            "            wait: seconds to wait for Losant to mark the uploaded file completed.\n"
            "            request_options: per-call overrides for the two Losant calls.\n\n"
            "        Returns:\n"
            f"            The file as `{other['name']}.get` answers it once completed.\n\n"
            "        Raises:\n"
            "            ValidationError: the source is not bytes or a readable file; raised before anything is sent.\n"
            "            APIError: Losant or the upload target refused (the file then stays pending).\n"
            "            RequestTimeoutError: the file is still pending `wait` seconds after the upload."
        )
        method = (
            "\n    async def upload(self, source: UploadSource, *, application_id: str, name: str | None = None, "
            "parent_directory: str | None = None, content_type: str | None = None, wait: float = 30.0, "
            f"request_options: RequestOptions | None = None) -> {ret}:\n"
            f'        """{doc}\n        """\n'
            f"        done: {ret} = await self._upload(\n"
            "            _POST, _ITEM_GET, source, application_id, name, parent_directory, content_type, wait, request_options\n"
            "        )\n"
            "        return done\n"
        )
        return f"from .{other['name']} import _GET as _ITEM_GET\n", method

    def _replace_method(self, resource: dict[str, Any]) -> str | None:
        """``replace``: for an item whose ``patch`` answers a presigned upload target (``file``,
        ``private_file``), the patch of its size and type, the upload and the wait, in one call."""
        actions = {a["name"]: a for a in resource["actions"]}
        patch, get = actions.get("patch"), actions.get("get")
        if patch is None or get is None or "replace" in actions:
            return None
        if not any(self._upload_target_schema(r.get("schema")) for r in patch["responses"] if 200 <= r["status"] < 300):
            return None
        id_param = next(p["name"] for p in get["params"] if p["in"] == "path" and p["name"] != "applicationId")
        py_id = py_identifier(id_param)
        schema = next(r["schema"] for r in get["responses"] if 200 <= r["status"] < 300)
        ret = render(self.models.type_of_schema(schema), "m.")
        self.rules["replace_method"] += 1
        doc = (
            f"Give the file new content in one call: `{resource['name']}.patch` with its new size and type,\n"
            f"        the POST of the bytes to the reply's `upload` target, then `{resource['name']}.get` until Losant\n"
            "        reports the file no longer pending. (`upload` takes the content in one multipart request.)\n\n"
            "        Args:\n"
            "            source: the new content (bytes) or the path of a file (str or PathLike), streamed from\n"
            "                disk in chunks, never read whole.\n"
            "            application_id: the application (24 hexadecimal characters).\n"
            f"            {py_id}: the file (24 hexadecimal characters).\n"
            "            content_type: its MIME type; guessed from a path's name when left out.\n"
            "            wait: seconds to wait for Losant to mark the uploaded file completed.\n"
            "            request_options: per-call overrides for the two Losant calls.\n\n"
            "        Returns:\n"
            f"            The file as `{resource['name']}.get` answers it once completed.\n\n"
            "        Raises:\n"
            "            ValidationError: the source is not bytes or a readable file; raised before anything is sent.\n"
            "            APIError: Losant or the upload target refused (the file then stays pending).\n"
            "            RequestTimeoutError: the file is still pending `wait` seconds after the upload."
        )
        return (
            f"\n    async def replace(self, source: UploadSource, *, application_id: str, {py_id}: str, "
            "content_type: str | None = None, wait: float = 30.0, "
            f"request_options: RequestOptions | None = None) -> {ret}:\n"
            f'        """{doc}\n        """\n'
            f"        done: {ret} = await self._upload(\n"
            "            _PATCH, _GET, source, application_id, None, None, content_type, wait, request_options,\n"
            f"            file_id={py_id},\n"
            "        )\n"
            "        return done\n"
        )

    def _action(self, res_name: str, a: dict[str, Any]) -> tuple[str, str]:
        name = a["name"]
        const = f"_{name.upper()}"
        params = a["params"]
        py_names = [py_identifier(p["name"]) for p in params]
        if len(set(py_names)) != len(py_names) or _RESERVED & set(py_names):
            raise ValueError(f"{res_name}.{name}: parameter names collide: {py_names}")
        success = [(r["status"], r.get("schema")) for r in a["responses"] if 200 <= r["status"] < 300]
        sse = a.get("sseEvents") or None
        multipart = any(p["in"] == "multipart" for p in params)
        body_schemas = {p.get("schema") for p in params if p["in"] == "body"}
        timestamped = bool(body_schemas & _STATE_SCHEMAS)
        query_names = {p["name"] for p in params if p["in"] == "query"}
        page_item: TypeTree | None = None
        page_schema: str | None = None
        # Page numbers (page/perPage) or offsets (limit/offset): both iterate with a Paginator.
        # So does a GET whose reply is a whole collection (`items`) and that takes no paging
        # parameter at all: its one page is everything, and `async for` reads its items.
        paging = {"page", "perPage", "limit", "offset", "startingAfterId", "endingBeforeId"}
        whole = a["method"] == "GET" and not (query_names & paging)
        if {"page", "perPage"} <= query_names or {"limit", "offset"} <= query_names or whole:
            for _, schema in success:
                if schema is not None and schema in self.models.schemas:
                    item = self.models.page_item(schema)
                    if item is not None:
                        page_item, page_schema = item, schema
                        break
        self.actions.append(
            ActionInfo(
                resource=res_name,
                action=name,
                paginated=page_item is not None,
                sse=sse is not None,
                multipart=multipart,
                accepted=any(s == 202 for s, _ in success),
            )
        )

        # -- the Operation constant
        lines = [f"{const} = Operation(\n"]
        lines.append(f"    resource={res_name!r},\n    action={name!r},\n")
        lines.append(f"    method={a['method']!r},\n    path={a['path']!r},\n")
        lines.append("    params=(\n")
        for p, py in zip(params, py_names, strict=True):
            required = True if p["in"] == "path" else bool(p.get("required"))
            parts = [repr(p["name"]), repr(py), repr(p["in"]), repr(p["type"]), repr(required)]
            if p.get("pattern"):
                parts.append(f"pattern={p['pattern']!r}")
            if p.get("serialize"):
                parts.append(f"serialize={p['serialize']!r}")
            if p.get("enum"):
                parts.append(f"enum={tuple(p['enum'])!r}")
            lines.append(f"        Param({', '.join(parts)}),\n")
        lines.append("    ),\n")
        responses = ", ".join(
            f"{status}: {render(self._schema_type(schema), prefix='m.', runtime=True)}" for status, schema in success
        )
        lines.append(f"    responses={{{responses}}},\n")
        if not a.get("authRequired", True):
            lines.append("    auth_required=False,\n")
        lines.append(f"    scopes={tuple(a.get('scopes') or ())!r},\n")
        if a["method"] in _IDEMPOTENT:
            lines.append("    idempotent=True,\n")
        if timestamped:
            lines.append("    timestamped_body=True,\n")
        if multipart:
            lines.append("    multipart=True,\n")
        if sse is not None:
            events = ", ".join(
                f"{e['event']!r}: {render(self._schema_type(e.get('schema')), prefix='m.', runtime=True)}" for e in sse
            )
            lines.append(f"    sse_events={{{events}}},\n")
        if page_item is not None:
            lines.append(f"    page_item={render(page_item, prefix='m.', runtime=True)},\n")
        lines.append(")\n\n")
        const_text = "".join(lines)

        # -- the method
        sig_parts = []
        for p, py in zip(params, py_names, strict=True):
            t = self._param_type(p)
            required = p["in"] == "path" or bool(p.get("required"))
            sig_parts.append(f"{py}: {t}" if required else f"{py}: {t} | None = None")
        sig = ", ".join(["self", "*", *sig_parts])
        args = ", ".join(py_names) + ("," if len(py_names) == 1 else "")
        if sse is not None:
            self.rules["sse_method"] += 1
            events_t = _typing_union([self._schema_type(e.get("schema")) for e in sse])
            ret, raw_ret, call, is_async = f"EventStream[{events_t}]", "EventStream[Any]", "self._stream", False
        elif page_item is not None:
            assert page_schema is not None
            self.rules["paginated_method"] += 1
            page_t = render(self.models.type_of_schema(page_schema), "m.")
            ret, raw_ret, call, is_async = f"Paginator[{page_t}, {render(page_item, 'm.')}]", "Paginator[Any, Any]", "self._paginate", False
        else:
            self.rules["plain_method"] += 1
            ret_t = _typing_union([self._schema_type(s) for _, s in success] or [NONE])
            ret, raw_ret, call, is_async = ret_t, "Any", "self._call", True
        prefix = "async def" if is_async else "def"
        await_ = "await " if is_async else ""
        tail_default = "raw: Literal[False] = False, request_options: RequestOptions | None = None"
        tail_raw = "raw: bool, request_options: RequestOptions | None = None"
        tail_impl = "raw: bool = False, request_options: RequestOptions | None = None"
        self.rules["raw_bool_overload"] += 1
        doc = self._doc(res_name, a, params, py_names, success, sse, page_item, page_schema)
        m = [
            "\n    @overload\n",
            f"    {prefix} {name}({sig}, {tail_default}) -> {ret}: ...\n",
            "    @overload\n",
            f"    {prefix} {name}({sig}, {tail_raw}) -> {raw_ret}: ...\n",
            f"    {prefix} {name}({sig}, {tail_impl}) -> {ret} | {raw_ret}:\n",
            f'        """{doc}\n        """\n',
            f"        return {await_}{call}({const}, ({args}), raw, request_options)\n",
        ]
        return const_text, "".join(m)

    def _doc(
        self,
        res_name: str,
        a: dict[str, Any],
        params: list[dict[str, Any]],
        py_names: list[str],
        success: list[tuple[int, str | None]],
        sse: list[dict[str, Any]] | None,
        page_item: TypeTree | None,
        page_schema: str | None,
    ) -> str:
        """The method's docstring, composed from the catalog's facts (never its prose)."""
        lines = [f"Call `{res_name}.{a['name']}` (API action `{a['apiName']}`): `{a['method']} {a['path']}`."]
        if not a.get("authRequired", True):
            lines += ["", "Needs no token."]
        elif a.get("scopes"):
            lines += ["", "A token needs one of these scopes: " + ", ".join(f"`{x}`" for x in a["scopes"]) + "."]
        lines += ["", "Args:"]
        for p, py in zip(params, py_names, strict=True):
            lines.append(f"    {py}: {self._param_doc(p)}")
        lines.append("    raw: return the reply as plain JSON values (dicts, lists) instead of Structs.")
        lines.append("    request_options: per-call overrides (timeout, retries, headers, global flags).")
        lines += ["", "Returns:"]
        if sse:
            kinds = ", ".join(f"`{e['event']}` ({self._schema_ref(e.get('schema'))})" for e in sse)
            lines.append(f"    An EventStream (use `async with`) of the events {kinds}.")
        elif page_item is not None:
            lines.append(
                f"    A Paginator: `await` it for the page ({self._schema_ref(page_schema)}), "
                f"or `async for` over every item ({render(page_item)}) of every page."
            )
        else:
            for status, schema in success:
                what = "nothing (no body)" if schema is None else self._schema_ref(schema)
                note = ", the work was queued" if status == 202 else ""
                lines.append(f"    On status {status}{note}: {what}.")
        lines += ["", "Raises:"]
        lines.append("    ValidationError: an argument is invalid; raised before anything is sent.")
        seen: set[str] = set()
        for e in a.get("errors") or ():
            cls = error_for_status(int(e["status"])).__name__
            if cls not in seen:
                seen.add(cls)
                statuses = sorted({int(x["status"]) for x in a["errors"] if error_for_status(int(x["status"])).__name__ == cls})
                lines.append(f"    {cls}: the API answered {' or '.join(map(str, statuses))}.")
        lines.append("    DecodeError: the reply is not the declared type (e.g. a field it must carry is missing).")
        text = "\n".join(f"        {line}" if line else "" for line in lines).lstrip()
        return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')

    def _schema_ref(self, schema: str | None) -> str:
        if schema is None:
            return "untyped JSON"
        return f"`{self.models.top_names[schema]}` (schema `{schema}`)"

    def _param_doc(self, p: dict[str, Any]) -> str:
        """One parameter in our words: where it goes, its type, whether it is needed, its constraints."""
        where = {"path": "in the path", "query": "in the query string", "body": "the JSON body", "multipart": "a multipart field", "header": "a header"}[p["in"]]
        required = p["in"] == "path" or bool(p.get("required"))
        kind = p["type"] if p["type"] != "undefined" else "any JSON value"
        bits = [f"`{p['name']}`, {where}, {kind}, {'required' if required else 'optional'}"]
        if p.get("schema"):
            bits.append(f"shaped as {self._schema_ref(p['schema'])}; a Struct or a mapping")
        if p.get("enum"):
            bits.append("one of " + ", ".join(f"`{v}`" for v in p["enum"]))
        if p.get("pattern"):
            if p["pattern"] == "^[A-Fa-f\\d]{24}$":
                bits.append("24 hexadecimal characters")
            else:
                bits.append(f"must match `{p['pattern']}`")
        lo, hi = p.get("minLength"), p.get("maxLength")
        if lo is not None or hi is not None:
            bits.append(f"{lo if lo is not None else 0} to {hi} characters" if hi is not None else f"at least {lo} characters")
        if p.get("default") is not None:
            bits.append(f"the server assumes `{p['default']}` when left out")
        if p.get("serialize") == "json":
            bits.append("sent as one JSON string")
        elif p.get("serialize") == "brackets":
            bits.append("sent as bracketed keys (`a[b]=c`)")
        if p.get("deprecated"):
            bits.append("deprecated")
        return "; ".join(bits) + "."


def _typing_union(types: list[TypeTree]) -> str:
    """A return annotation: for typing only (each status decodes into its own type), so any mix is fine."""
    parts: list[str] = []
    for t in types:
        text = render(t, "m.")
        if text not in parts:
            parts.append(text)
    if "None" in parts:
        parts.remove("None")
        parts.append("None")
    return " | ".join(parts)
