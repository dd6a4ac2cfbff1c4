"""The wire test: every action of the catalog, called once through the generated client against a
real local HTTP server, checked on the server side against what the catalog says."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import msgspec
from aiohttp import web

from losant_async.rest import EventStream, LosantClient, Paginator
from losant_async.rest._operation import Operation
from losant_async.rest.operations import all_operations
from tests.integration.rest.rest_local_server import LocalServer, Seen, json_reply
from tests.support.schema_examples import catalog, example_for_param, example_for_schema

TOKEN = "wire-test-token"
GLOBALS = {"_actions": "false", "_links": "true", "_embedded": "true"}


def flatten(prefix: str, value: Any) -> list[tuple[str, str]]:
    """qs.stringify-style bracketed keys, written independently of the client's encoder."""
    if isinstance(value, dict):
        return [pair for k, v in value.items() for pair in flatten(f"{prefix}[{k}]", v)]
    if isinstance(value, list):
        return [pair for i, v in enumerate(value) for pair in flatten(f"{prefix}[{i}]", v)]
    if value is None:
        return []
    return [(prefix, scalar(value))]


def scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def sse_handler(events: dict[str, Any]) -> Any:
    async def handle(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b": keepalive\n\n")
        await resp.write(b'event: somethingElse\ndata: {"ignored": true}\n\n')
        for name, data in events.items():
            await resp.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
        await resp.write_eof()
        return resp

    return handle


def check_request(
    action: dict[str, Any], op: Operation, kwargs: dict[str, Any], seen: Seen
) -> list[str]:
    """What differs between the request the server saw and what the catalog says."""
    problems: list[str] = []
    by_api = {p.api_name: kwargs[p.py_name] for p in op.params}
    if seen.method != action["method"]:
        problems.append(f"method {seen.method} != {action['method']}")
    path = action["path"]
    for p in action["params"]:
        if p["in"] == "path":
            path = path.replace("{" + p["name"] + "}", quote(str(by_api[p["name"]]), safe=""))
    if seen.raw_path != path:
        problems.append(f"path {seen.raw_path} != {path}")

    expected: list[tuple[str, str]] = []
    for p in action["params"]:
        value = by_api.get(p["name"])
        if p["in"] != "query" or value is None:
            continue
        if p.get("serialize") == "json":
            got = seen.query.getall(p["name"], [])
            if len(got) != 1 or json.loads(got[0]) != value:
                problems.append(f"query {p['name']} (json) = {got!r}")
            continue
        if p.get("serialize") == "brackets" or isinstance(value, (dict, list)):
            expected += flatten(p["name"], value)
        else:
            expected.append((p["name"], scalar(value)))
    is_stream = "sseEvents" in action
    got_pairs = [(k, v) for k, v in seen.query.items() if not (k in GLOBALS and not is_stream)]
    json_names = {p["name"] for p in action["params"] if p.get("serialize") == "json"}
    got_pairs = [(k, v) for k, v in got_pairs if k not in json_names]
    if sorted(got_pairs) != sorted(expected):
        problems.append(f"query {sorted(got_pairs)} != {sorted(expected)}")
    flags = {k: seen.query.get(k) for k in GLOBALS}
    if is_stream and any(v is not None for v in flags.values()):
        problems.append(f"global flags sent on a stream: {flags}")
    if not is_stream and flags != GLOBALS:
        problems.append(f"global flags {flags}")

    headers = seen.headers
    accept = "text/event-stream" if is_stream else "application/json"
    if headers.get("Accept") != accept or headers.get("Accept-Version") != "^1.31.0":
        problems.append(
            f"Accept/Accept-Version {headers.get('Accept')!r} {headers.get('Accept-Version')!r}"
        )
    if not headers.get("User-Agent", "").startswith("losant-async/"):
        problems.append("User-Agent")
    auth = headers.get("Authorization")
    if action["authRequired"] and auth != f"Bearer {TOKEN}":
        problems.append(f"Authorization {auth!r}")
    if not action["authRequired"] and auth is not None:
        problems.append("Authorization sent to an action that needs none")

    body_params = [p for p in action["params"] if p["in"] == "body"]
    multipart = [p for p in action["params"] if p["in"] == "multipart"]
    ctype = headers.get("Content-Type", "")
    if body_params:
        value = by_api[body_params[0]["name"]]
        if ctype != "application/json":
            problems.append(f"Content-Type {ctype!r}")
        sent = json.loads(seen.body)
        if op.timestamped_body:  # states without a time get the call's time
            sent = _drop_added_time(sent, value)
        if sent != value:
            problems.append(f"body {sent!r} != {value!r}")
    elif multipart:
        if not ctype.startswith("multipart/form-data"):
            problems.append(f"Content-Type {ctype!r}")
        parts = {name: (filename, content) for name, filename, _, content in seen.parts}
        for p in multipart:
            value = by_api[p["name"]]
            if value is None:
                continue
            if p["name"] not in parts:
                problems.append(f"multipart part {p['name']} missing")
                continue
            filename, content = parts[p["name"]]
            if p["type"] == "file":
                if content != value or not filename:
                    problems.append(f"file part {p['name']}: {filename!r} {content!r}")
            elif p["type"] == "hash":
                if json.loads(content) != value:
                    problems.append(f"hash part {p['name']}: {content!r}")
            elif content.decode() != scalar(value):
                problems.append(f"text part {p['name']}: {content!r}")
    elif seen.body:
        problems.append(f"unexpected body {seen.body[:80]!r}")
    return problems


def _drop_added_time(sent: Any, original: Any) -> Any:
    if isinstance(sent, list) and isinstance(original, list):
        return [_drop_added_time(s, o) for s, o in zip(sent, original, strict=False)]
    if isinstance(sent, dict) and isinstance(original, dict) and "time" not in original:
        return {k: v for k, v in sent.items() if k != "time"}
    return sent


def check_result(tp: Any, result: Any) -> str | None:
    if tp is None:
        return None if result is None else f"expected no result, got {type(result).__name__}"
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return (
            None
            if isinstance(tp, type) and isinstance(result, tp)
            else f"{type(result).__name__} is not {tp.__name__}"
        )
    origin = getattr(tp, "__origin__", None)
    if isinstance(origin, type) and not isinstance(result, origin):
        return f"{type(result).__name__} is not {origin.__name__}"
    return None


async def test_every_catalog_action_goes_over_the_wire_as_the_catalog_says(
    local_server: LocalServer,
) -> None:
    actions = {(r["name"], a["name"]): a for r in catalog()["resources"] for a in r["actions"]}
    operations = all_operations()
    exercised: set[tuple[str, str]] = set()
    failures: list[str] = []
    async with LosantClient(TOKEN, url=local_server.url, max_retries=0) as client:
        for op in operations:
            action = actions[(op.resource, op.action)]
            kwargs = {p.py_name: example_for_param(p, op) for p in op.params}
            responses = sorted(action["responses"], key=lambda r: r["status"])
            status, schema = responses[0]["status"], responses[0]["schema"]
            method = getattr(getattr(client, op.resource), op.action)
            local_server.seen.clear()
            try:
                if op.sse_events is not None:
                    events = {
                        e["event"]: example_for_schema(e["schema"]) for e in action["sseEvents"]
                    }
                    local_server.handler = sse_handler(events)
                    stream = method(**kwargs)
                    assert isinstance(stream, EventStream)
                    async with stream:
                        received = [event async for event in stream]
                    name = next(iter(events))
                    problem = (
                        check_result(op.sse_events[name], received[0])
                        if len(received) == 1
                        else f"{len(received)} events"
                    )
                else:
                    reply = example_for_schema(schema) if schema else None
                    local_server.handler = json_reply(status, reply)
                    call = method(**kwargs)
                    if isinstance(call, Paginator):
                        result = await call
                    else:
                        result = await call
                    problem = check_result(op.responses.get(status), result)
                if problem:
                    failures.append(f"{op.full_name}: result: {problem}")
                if len(local_server.seen) != 1:
                    failures.append(f"{op.full_name}: {len(local_server.seen)} requests")
                else:
                    failures += [
                        f"{op.full_name}: {p}"
                        for p in check_request(action, op, kwargs, local_server.seen[0])
                    ]
                exercised.add((op.resource, op.action))
            except Exception as exc:  # collect every failure, not just the first
                failures.append(f"{op.full_name}: {type(exc).__name__}: {str(exc)[:300]}")
    assert not failures, f"{len(failures)} problems:\n" + "\n".join(failures)
    assert exercised == set(actions), f"not exercised: {sorted(set(actions) - exercised)}"
    assert len(exercised) == len(actions) == 380
    print(f"wire test: {len(exercised)} actions exercised / {len(actions)} in the catalog")
