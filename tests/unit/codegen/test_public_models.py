"""``losant_async.rest.models`` is the public home of every generated Struct and alias."""

from __future__ import annotations

import losant_async.rest._generated.models as generated
from losant_async.rest import models
from tests.support.schema_examples import missing_schemas, schema_names
from tools.codegen.naming import pascal


def test_all_is_the_generated_list_and_every_name_is_the_same_object() -> None:
    assert models.__all__ == generated.__all__
    assert len(set(models.__all__)) == len(models.__all__)
    for name in models.__all__:
        assert getattr(models, name) is getattr(generated, name), name


def test_every_schema_has_a_public_name() -> None:
    names = set(models.__all__)
    for schema in (*schema_names(), *missing_schemas()):
        assert pascal(schema) in names, schema
    assert {"AwareDatetime", "LosantModel", "Device", "Devices", "DeviceState"} <= names


def test_the_client_returns_the_public_classes() -> None:
    from losant_async.rest._generated.resources import device

    assert device._GET.responses[200] is models.Device
