"""Every action whose reply is a collection of items can be iterated with ``async for`` (issue 25, item 2).

A paged action (page/perPage or limit/offset), and a GET answering its whole
collection at once, return a ``Paginator``: ``await`` is the reply as before,
``async for`` its items. Before, ``async for`` over the coroutine of
``data_table_rows.query`` raised TypeError and left a "never awaited" warning.
"""

from __future__ import annotations

import inspect

from losant_async.rest import LosantClient, Paginator
from losant_async.rest.operations import all_operations
from tests.support.schema_examples import catalog

# Cursor paging (startingAfterId/endingBeforeId) is not iterated yet: one page per call.
NOT_ITERATED = {"instance_sandboxes.get", "me.add_recent_item"}


def _collection_actions() -> set[str]:
    from tools.codegen.models import ModelBuilder
    from tools.codegen.spec import load_spec

    spec = load_spec()
    models = ModelBuilder(spec)
    models.build()
    names = set()
    for resource in catalog()["resources"]:
        for action in resource["actions"]:
            for reply in action["responses"]:
                schema = reply.get("schema")
                if schema and 200 <= reply["status"] < 300 and schema in models.schemas and models.page_item(schema):
                    names.add(f"{resource['name']}.{action['name']}")
    return names


def test_every_collection_reply_iterates_but_the_listed_ones() -> None:
    ops = {op.full_name: op for op in all_operations()}
    collections = _collection_actions()
    iterated = {name for name in collections if ops[name].page_item is not None}
    assert collections - iterated == NOT_ITERATED
    assert {"data_table_rows.query", "data_table_rows.get", "device_attributes.get", "devices.get"} <= iterated


def test_an_iterated_action_returns_a_paginator_not_a_coroutine() -> None:
    client = LosantClient("t", url="http://127.0.0.1:9")
    query = client.data_table_rows.query(application_id="a" * 24, data_table_id="b" * 24)
    assert isinstance(query, Paginator)
    assert not inspect.iscoroutine(query)
    assert hasattr(query, "__aiter__") and hasattr(query, "__await__")
