"""The example builder others rely on: deterministic, and valid against the schemas it reads."""

from __future__ import annotations

from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from losant_async.rest.operations import all_operations
from tests.support.schema_examples import _load, example_for_param, example_for_schema, schema_names

# Upstream schemas that jsonschema cannot check (malformed keywords), or whose
# oneOf members all accept the required-only payload ({}): nothing to assert.
UNCHECKABLE = {
    "instanceOrgPost",
    "orgInvites",
    "orgInvitesUser",
    "validateContextError",
    "validateContextSuccess",
}
AMBIGUOUS_WHEN_MINIMAL = {"dataTableRowInsertResult", "flowVersion"}


def _validator(name: str) -> jsonschema.Draft7Validator:
    root: dict[str, Any] = dict(_load(name))
    root["definitions"] = {n: _load(n) for n in schema_names()}
    return jsonschema.Draft7Validator(root)


@pytest.mark.parametrize("name", sorted(set(schema_names()) - UNCHECKABLE))
def test_examples_are_valid_against_their_schema(name: str) -> None:
    validator = _validator(name)
    assert list(validator.iter_errors(example_for_schema(name))) == []
    if name not in AMBIGUOUS_WHEN_MINIMAL:
        assert list(validator.iter_errors(example_for_schema(name, include_optional=False))) == []


def test_examples_are_deterministic_and_fresh() -> None:
    first = example_for_schema("device")
    first["name"] = "mutated"
    assert example_for_schema("device") != first
    assert example_for_schema("device") == example_for_schema("device")


def test_unknown_schema_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="noSuchSchema"):
        example_for_schema("noSuchSchema")


def test_param_examples_fit_their_declared_constraints() -> None:
    for op in all_operations():
        for param in op.params:
            value = example_for_param(param, op)
            if param.regex is not None:
                assert isinstance(value, str) and param.regex.search(value), (
                    op.full_name,
                    param.api_name,
                )
            if param.enum:
                assert value in param.enum, (op.full_name, param.api_name)
            if param.kind == "file":
                assert isinstance(value, bytes)
