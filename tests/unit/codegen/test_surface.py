"""The generated surface matches the catalog: one property per resource, one method per action."""

from __future__ import annotations

import importlib
import inspect
import re
from functools import cached_property
from typing import Any

import pytest

from losant_async.rest._generated import RESOURCES, GeneratedResources
from losant_async.rest._operation import Operation
from losant_async.rest._resource import Resource
from losant_async.rest.operations import all_operations, find_operation
from losant_async.rest.options import RequestOptions
from tests.support.schema_examples import catalog, example_for_param

SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")
CATALOG_RESOURCES = catalog()["resources"]
CATALOG_ACTIONS = [(r, a) for r in CATALOG_RESOURCES for a in r["actions"]]


class FakeRequester:
    """Records what a generated method hands to the core."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Operation, tuple[Any, ...], bool, RequestOptions | None]] = []

    async def request(
        self, op: Operation, args: tuple[Any, ...], *, raw: bool, options: RequestOptions | None
    ) -> Any:
        self.calls.append(("request", op, args, raw, options))
        return "request-result"

    def paginate(
        self, op: Operation, args: tuple[Any, ...], *, raw: bool, options: RequestOptions | None
    ) -> Any:
        self.calls.append(("paginate", op, args, raw, options))
        return "paginator"

    def stream(
        self, op: Operation, args: tuple[Any, ...], *, raw: bool, options: RequestOptions | None
    ) -> Any:
        self.calls.append(("stream", op, args, raw, options))
        return "stream"


class Client(GeneratedResources):
    """The smallest client: what LosantClient does, minus caching."""

    __slots__ = ("requester",)

    def __init__(self) -> None:
        self.requester = FakeRequester()

    def _resource(self, name: str) -> Any:
        module, cls = RESOURCES[name]
        return getattr(importlib.import_module(module), cls)(self.requester)


def test_counts_come_from_the_catalog() -> None:
    assert len(RESOURCES) == len(CATALOG_RESOURCES)
    assert len(all_operations()) == len(CATALOG_ACTIONS)
    assert len({op.full_name for op in all_operations()}) == len(CATALOG_ACTIONS)


def test_the_mixin_refuses_without_a_client() -> None:
    with pytest.raises(NotImplementedError):
        _ = GeneratedResources().device


@pytest.mark.parametrize("resource", CATALOG_RESOURCES, ids=lambda r: r["name"])
def test_every_resource_is_a_typed_property(resource: dict[str, Any]) -> None:
    # A cached_property: read on every call, so computed once per client.
    assert isinstance(inspect.getattr_static(GeneratedResources, resource["name"]), cached_property)
    module, cls_name = RESOURCES[resource["name"]]
    assert cls_name == f"{resource['className']}Resource"
    obj = getattr(Client(), resource["name"])
    assert type(obj).__name__ == cls_name
    assert isinstance(obj, Resource)
    assert type(obj).__module__ == module


@pytest.mark.parametrize(("resource", "action"), CATALOG_ACTIONS, ids=lambda x: x["name"])
def test_every_action_is_a_method_with_keyword_only_snake_case_params(
    resource: dict[str, Any], action: dict[str, Any]
) -> None:
    module, cls_name = RESOURCES[resource["name"]]
    cls = getattr(importlib.import_module(module), cls_name)
    method = getattr(cls, action["name"])
    params = list(inspect.signature(method).parameters.values())[1:]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params)
    assert [p.name for p in params[-2:]] == ["raw", "request_options"]
    op = find_operation(resource["name"], action["name"])
    assert [p.name for p in params[:-2]] == [p.py_name for p in op.params]
    assert [p.api_name for p in op.params] == [p["name"] for p in action["params"]]
    for sig_param, catalog_param in zip(params[:-2], action["params"], strict=True):
        assert SNAKE.match(sig_param.name), sig_param.name
        required = catalog_param["in"] == "path" or bool(catalog_param["required"])
        if required:
            assert sig_param.default is inspect.Parameter.empty, sig_param.name
        else:
            assert sig_param.default is None, sig_param.name


def _kwargs(op: Operation) -> dict[str, Any]:
    return {p.py_name: example_for_param(p, op) for p in op.params}


@pytest.mark.parametrize("op", all_operations(), ids=lambda op: op.full_name)
async def test_every_method_hands_its_operation_and_args_in_order_to_the_core(
    op: Operation,
) -> None:
    client = Client()
    method = getattr(getattr(client, op.resource), op.action)
    kwargs = _kwargs(op)
    options = RequestOptions()
    if op.sse_events:
        kind, expected = "stream", "stream"
    elif op.page_item is not None:
        kind, expected = "paginate", "paginator"
    else:
        kind, expected = "request", "request-result"
    assert inspect.iscoroutinefunction(method) == (kind == "request")
    result = method(**kwargs, raw=True, request_options=options)
    if kind == "request":
        result = await result
    assert result == expected
    [(got_kind, got_op, args, raw, got_options)] = client.requester.calls
    assert (got_kind, got_op, raw, got_options) == (kind, op, True, options)
    assert args == tuple(kwargs[p.py_name] for p in op.params)


@pytest.mark.parametrize("op", all_operations(), ids=lambda op: op.full_name)
def test_operations_describe_the_catalog_action(op: Operation) -> None:
    resource = next(r for r in CATALOG_RESOURCES if r["name"] == op.resource)
    action = next(a for a in resource["actions"] if a["name"] == op.action)
    assert (op.method, op.path) == (action["method"], action["path"])
    assert op.idempotent == (action["method"] in {"GET", "HEAD", "PUT", "OPTIONS"})
    assert sorted(op.responses) == sorted(
        r["status"] for r in action["responses"] if 200 <= r["status"] < 300
    )
    assert op.scopes == tuple(action["scopes"])
    assert op.multipart == any(p["in"] == "multipart" for p in action["params"])
    assert (op.sse_events is not None) == bool(action.get("sseEvents"))
    for placeholder in re.findall(r"{(\w+)}", op.path):
        assert any(
            p.api_name == placeholder and p.location == "path" and p.required for p in op.params
        )


def test_state_reports_are_timestamped_and_lists_paginate() -> None:
    assert find_operation("device", "send_state").timestamped_body
    devices = find_operation("devices", "get")
    assert devices.page_item is not None and devices.page_item.__name__ == "Device"
    assert find_operation("device", "state_stream").sse_events is not None


def test_find_operation_names_what_is_missing() -> None:
    with pytest.raises(KeyError, match="nope"):
        find_operation("nope", "get")
    with pytest.raises(KeyError, match="no action named 'nope'"):
        find_operation("device", "nope")
