"""Every schema's realistic payloads decode into its generated type, and survive a round trip."""

from __future__ import annotations

import copy
import json
import re
from datetime import datetime
from typing import Any

import msgspec
import pytest

from losant_async.rest import models
from tests.support.schema_examples import catalog, example_for_schema, missing_schemas, schema_names
from tests.unit.rest.rest_unit_helpers import device_json
from tools.codegen import OUTPUT_DIR
from tools.codegen.naming import pascal

UNKNOWN = "zzFieldFromANewerServer"


def _response_schemas() -> list[str]:
    names: set[str] = set()
    for resource in catalog()["resources"]:
        for action in resource["actions"]:
            names.update(r["schema"] for r in action["responses"] if r["schema"])
            names.update(e["schema"] for e in action.get("sseEvents") or () if e["schema"])
    return sorted(names - missing_schemas())


RESPONSE_SCHEMAS = _response_schemas()


def _type(name: str) -> Any:
    return getattr(models, pascal(name))


def _decode(payload: Any, tp: Any) -> Any:
    return msgspec.json.decode(json.dumps(payload).encode(), type=tp)


_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d")


def _same_dates(value: Any) -> Any:
    """``value`` with ISO 8601 strings as datetimes: ``.678Z`` and ``.678000Z`` are one instant."""
    if isinstance(value, dict):
        return {k: _same_dates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_same_dates(v) for v in value]
    if isinstance(value, str) and _ISO.match(value):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value


def _builtins(decoded: Any) -> Any:
    return _same_dates(msgspec.to_builtins(decoded))


def _struct_objects(example: Any, decoded: Any) -> list[dict[str, Any]]:
    """The payload's objects that decoded into Structs (so a key there is a field name), outermost first."""
    out: list[dict[str, Any]] = []
    if isinstance(decoded, msgspec.Struct) and isinstance(example, dict):
        out.append(example)
        for f in msgspec.structs.fields(type(decoded)):
            if f.encode_name in example:
                out += _struct_objects(example[f.encode_name], getattr(decoded, f.name))
    elif isinstance(decoded, list) and isinstance(example, list):
        for e, d in zip(example, decoded, strict=True):
            out += _struct_objects(e, d)
    elif isinstance(decoded, dict) and isinstance(example, dict):
        for key, d in decoded.items():
            out += _struct_objects(example[key], d)
    return out


def test_every_response_schema_has_a_type() -> None:
    assert len(RESPONSE_SCHEMAS) > 100
    for name in RESPONSE_SCHEMAS:
        assert _type(name) is not None


@pytest.mark.parametrize("name", RESPONSE_SCHEMAS)
def test_full_payload_decodes_without_losing_data(name: str) -> None:
    example = example_for_schema(name)
    decoded = _decode(example, _type(name))
    assert _builtins(decoded) == _same_dates(example)


@pytest.mark.parametrize("name", RESPONSE_SCHEMAS)
def test_unknown_fields_are_ignored_at_every_level(name: str) -> None:
    example = copy.deepcopy(example_for_schema(name))
    tp = _type(name)
    objects = _struct_objects(example, _decode(example, tp))
    planted = objects[:1] + objects[-1:] if len(objects) > 1 else objects  # outermost, innermost
    for obj in planted:
        obj[UNKNOWN] = {"nested": [1, "two"]}
    decoded = _decode(example, tp)
    for obj in planted:
        del obj[UNKNOWN]
    assert _builtins(decoded) == _same_dates(example_for_schema(name))


_BY_RULE = {
    field
    for fields in json.loads((OUTPUT_DIR / "_record.json").read_text())["required_by_rule"].values()
    for field in fields
}


def _minimal_example(name: str) -> Any:
    """The schema's required fields, plus those the generator's rules enforce (identity, create, server)."""
    example = example_for_schema(name, include_optional=False)
    tp = _type(name)
    if isinstance(example, dict) and isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        full = example_for_schema(name)
        for f in msgspec.structs.fields(tp):
            if f.required and f.encode_name not in example:
                by_rule = f"{tp.__name__}.{f.name}" in _BY_RULE
                assert by_rule or f.encode_name in ("id", "items"), f"{name}: {f.encode_name} enforced but not required"
                example[f.encode_name] = full[f.encode_name]
    return example


@pytest.mark.parametrize("name", RESPONSE_SCHEMAS)
def test_payload_with_only_required_fields_decodes(name: str) -> None:
    example = _minimal_example(name)
    decoded = _decode(example, _type(name))
    assert _builtins(decoded) == _same_dates(example)


@pytest.mark.parametrize("name", schema_names())
def test_round_trip_through_the_struct(name: str) -> None:
    tp = _type(name)
    decoded = _decode(example_for_schema(name), tp)
    again = msgspec.json.decode(msgspec.json.encode(decoded), type=tp)
    assert again == decoded


def test_unset_fields_are_not_sent_and_wire_names_are_kept() -> None:
    body = models.DeviceState(data={"temp": 21.5})
    assert json.loads(msgspec.json.encode(body)) == {"data": {"temp": 21.5}}
    query = models.AdvancedDeviceQuery(and_=[models.AdvancedDeviceQuery(name="pump")])
    assert json.loads(msgspec.json.encode(query)) == {"$and": [{"name": "pump"}]}
    assert _decode({"$and": [{"name": "pump"}]}, models.AdvancedDeviceQuery) == query


def test_absent_fields_are_unset() -> None:
    device = _decode(device_json(), models.Device)
    assert device.description is msgspec.UNSET


def test_new_enum_values_still_decode() -> None:
    device = _decode(device_json(deviceClass="quantumDevice"), models.Device)
    assert device.device_class == "quantumDevice"


def test_credentials_are_redacted_in_repr() -> None:
    token = _decode(
        {
            "token": "s3cr3t-value",
            "applicationId": "575ecf887ae143cd83dc4aa2",
            "deviceId": "575ecf887ae143cd83dc4aa3",
            "deviceClass": "standalone",
        },
        models.AuthedDevice,
    )
    assert "s3cr3t-value" not in repr(token)
    assert "applicationId" not in repr(
        token
    ) and "application_id='575ecf887ae143cd83dc4aa2'" in repr(token)


def test_json_numbers_keep_ints_as_ints() -> None:
    state = _decode({"data": {"count": 3, "temp": 21.5}}, models.DeviceState)
    assert state.data == {"count": 3, "temp": 21.5}
    assert type(state.data["count"]) is int
