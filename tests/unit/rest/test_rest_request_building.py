"""Request building: validation, path quoting, query encoding, bodies, multipart parts (pure, no I/O)."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qsl

import msgspec
import pytest

from losant_async._state import KeyedStamper
from losant_async.errors import InvalidIdError, ValidationError
from losant_async.rest._operation import Operation, Param
from losant_async.rest._request import API_VERSION, Part, global_query, load_files, prepare
from tests.unit.rest.rest_unit_helpers import (
    APP,
    APP_ID,
    DEV,
    DEVICE_ID,
    GET_THING,
    POST_THING,
    SEND_STATE,
)


def op_with(
    *params: Param, path: str = "/x", multipart: bool = False, method: str = "GET"
) -> Operation:
    return Operation("r", "a", method, path, params, {200: None}, multipart=multipart)


def query_of(op: Operation, *args: object) -> list[tuple[str, str]]:
    return parse_qsl(prepare(op, args).query, keep_blank_values=True)


def test_api_version_matches_the_vendored_catalog() -> None:
    catalog = json.loads((Path(__file__).parents[3] / "losant_async" / "_spec" / "catalog.json").read_text())
    assert catalog["apiVersion"] == API_VERSION


def test_path_values_are_checked_and_substituted() -> None:
    req = prepare(GET_THING, (APP_ID, DEVICE_ID))
    assert req.method == "GET"
    assert req.path == f"/applications/{APP_ID}/things/{DEVICE_ID}"
    assert req.query == ""
    assert req.body is None
    assert req.retry_safe is True


@pytest.mark.parametrize(
    "bad", ["nothex", APP_ID + "0", APP_ID[:-1], APP_ID + "\n", "../" + APP_ID[3:]]
)
def test_a_bad_id_raises_invalid_id_naming_the_parameter(bad: str) -> None:
    with pytest.raises(InvalidIdError) as info:
        prepare(GET_THING, (bad, DEVICE_ID))
    assert info.value.param == "application_id"
    assert "application_id" in str(info.value)


def test_an_id_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(InvalidIdError):
        prepare(GET_THING, (12345, DEVICE_ID))


def test_remembered_paths_stay_per_value_and_checked() -> None:
    """The per-action path cache: a repeat gives the same path, a new ID its own, a bad one still fails."""
    other = "b" * 24
    first = prepare(GET_THING, (APP_ID, DEVICE_ID)).path
    assert prepare(GET_THING, (APP_ID, DEVICE_ID)).path == first
    assert prepare(GET_THING, (APP_ID, other)).path == f"/applications/{APP_ID}/things/{other}"
    assert prepare(GET_THING, (other, DEVICE_ID)).path == f"/applications/{other}/things/{DEVICE_ID}"
    with pytest.raises(InvalidIdError):
        prepare(GET_THING, (APP_ID, DEVICE_ID + "\n"))
    with pytest.raises(ValidationError):  # unhashable: refused by the checks, not a TypeError
        prepare(GET_THING, (APP_ID, [DEVICE_ID]))


def test_a_path_built_from_a_non_string_is_not_remembered_as_its_text() -> None:
    op = op_with(Param("n", "n", "path", "string", True), path="/v/{n}")
    assert prepare(op, (1,)).path == "/v/1"
    assert prepare(op, (True,)).path == "/v/true"  # True == 1 and hashes alike
    assert prepare(op, ("1",)).path == "/v/1"
    assert prepare(op, (True,)).path == "/v/true"


def test_path_values_without_a_pattern_are_quoted() -> None:
    op = op_with(Param("name", "name", "path", "string", True), path="/versions/{name}/x")
    assert prepare(op, ("a b c?d#e%",)).path == "/versions/a%20b%20c%3Fd%23e%25/x"


def test_missing_required_argument_raises_validation_error() -> None:
    with pytest.raises(ValidationError, match="thing is required"):
        prepare(POST_THING, (APP_ID, None))


def test_wrong_argument_count_raises() -> None:
    with pytest.raises(ValidationError):
        prepare(GET_THING, (APP_ID,))


def test_query_scalars_booleans_numbers_and_none() -> None:
    op = op_with(
        Param("flag", "flag", "query", "string", False),
        Param("off", "off", "query", "string", False),
        Param("n", "n", "query", "string", False),
        Param("f", "f", "query", "string", False),
        Param("absent", "absent", "query", "string", False),
        Param("text", "text", "query", "string", False),
    )
    assert query_of(op, True, False, 10, 2.5, None, "a b&c=d") == [
        ("flag", "true"),
        ("off", "false"),
        ("n", "10"),
        ("f", "2.5"),
        ("text", "a b&c=d"),
    ]


def test_query_datetime_becomes_epoch_milliseconds() -> None:
    op = op_with(Param("start", "start", "query", "string", False))
    when = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)
    assert query_of(op, when) == [("start", str(int(when.timestamp() * 1000)))]


def test_query_enum_mismatch_raises_before_sending() -> None:
    op = op_with(
        Param("sortDirection", "sort_direction", "query", "string", False, enum=("asc", "desc"))
    )
    assert query_of(op, "desc") == [("sortDirection", "desc")]
    with pytest.raises(ValidationError, match="sort_direction='up' is not one of asc, desc"):
        prepare(op, ("up",))


def test_query_pattern_mismatch_raises_invalid_id() -> None:
    op = op_with(
        Param("categoryId", "category_id", "query", "string", False, pattern=r"^[A-Fa-f\d]{24}$")
    )
    with pytest.raises(InvalidIdError):
        prepare(op, ("zzz",))


def test_query_json_serialisation_is_one_json_string() -> None:
    op = op_with(Param("query", "query", "query", "hash", False, serialize="json"))
    value = {"$and": [{"name": {"$eq": "a b"}}, {"count": 3}]}
    pairs = query_of(op, value)
    assert len(pairs) == 1 and pairs[0][0] == "query"
    assert json.loads(pairs[0][1]) == value


def test_query_json_serialisation_accepts_structs() -> None:
    class Q(msgspec.Struct, omit_defaults=True):
        name: str
        other: int | None = None

    op = op_with(Param("query", "query", "query", "hash", False, serialize="json"))
    assert json.loads(query_of(op, Q(name="x"))[0][1]) == {"name": "x"}


def test_query_brackets_serialisation() -> None:
    op = op_with(
        Param("tagFilter", "tag_filter", "query", "hash", False, serialize="brackets"),
        Param("keywords", "keywords", "query", "array", False, serialize="brackets"),
    )
    pairs = query_of(
        op, [{"key": "floor", "value": 8}, {"key": "on", "value": True}], ["gps", "aws"]
    )
    assert pairs == [
        ("tagFilter[0][key]", "floor"),
        ("tagFilter[0][value]", "8"),
        ("tagFilter[1][key]", "on"),
        ("tagFilter[1][value]", "true"),
        ("keywords[0]", "gps"),
        ("keywords[1]", "aws"),
    ]


def test_plain_dict_query_values_without_serialize_use_brackets() -> None:
    op = op_with(Param("deviceClass", "device_class", "query", "hash", False))
    assert query_of(op, {"a": {"b": "c"}}) == [("deviceClass[a][b]", "c")]


def test_query_keys_and_values_are_percent_encoded() -> None:
    op = op_with(Param("tagFilter", "tag_filter", "query", "hash", False, serialize="brackets"))
    raw = prepare(op, ([{"key": "a&b"}],)).query
    assert raw == "tagFilter%5B0%5D%5Bkey%5D=a%26b"


def test_global_query_flags() -> None:
    assert global_query(False, True, True) == "_actions=false&_links=true&_embedded=true"
    assert global_query(True, False, False) == "_actions=true&_links=false&_embedded=false"


def test_body_accepts_dicts_lists_and_structs() -> None:
    assert json.loads(prepare(POST_THING, (APP_ID, {"name": "x"})).body or b"") == {"name": "x"}

    class Body(msgspec.Struct, omit_defaults=True, rename="camel"):
        device_name: str
        tags: list[str] = []

    assert json.loads(prepare(POST_THING, (APP_ID, Body(device_name="d"))).body or b"") == {
        "deviceName": "d"
    }
    assert json.loads(prepare(POST_THING, (APP_ID, [{"a": 1}])).body or b"") == [{"a": 1}]


@pytest.mark.parametrize("bad", ["a string", b"bytes", 42, 1.5, True])
def test_body_of_the_wrong_type_raises(bad: object) -> None:
    with pytest.raises(ValidationError, match="thing must be a Struct, a dict or a list"):
        prepare(POST_THING, (APP_ID, bad))


def test_body_that_is_not_json_serialisable_raises() -> None:
    with pytest.raises(ValidationError, match="thing is not JSON-serialisable"):
        prepare(POST_THING, (APP_ID, {"x": object()}))


def test_non_idempotent_calls_are_not_retry_safe() -> None:
    assert prepare(POST_THING, (APP_ID, {})).retry_safe is False


def test_states_without_time_are_stamped_when_a_stamper_is_given() -> None:
    states: list[dict[str, object]] = [
        {"data": {"t": 1}},
        {"data": {"t": 2}, "time": 1700000000000},
    ]
    req = prepare(SEND_STATE, (APP_ID, DEVICE_ID, states), stamp=KeyedStamper())
    sent = json.loads(req.body or b"")
    assert isinstance(sent[0]["time"], int) and sent[0]["time"] > 1_700_000_000_000
    assert sent[1]["time"] == 1700000000000
    assert req.retry_safe is True
    assert "time" not in states[0], "the caller's dict is not modified"


def test_states_are_not_stamped_without_a_stamper() -> None:
    req = prepare(SEND_STATE, (APP_ID, DEVICE_ID, {"data": {"t": 1}}))
    assert json.loads(req.body or b"") == {"data": {"t": 1}}
    assert req.retry_safe is False


def test_struct_states_are_stamped() -> None:
    class State(msgspec.Struct, omit_defaults=True):
        data: dict[str, int]
        time: int | msgspec.UnsetType = msgspec.UNSET

    req = prepare(SEND_STATE, (APP_ID, DEVICE_ID, State(data={"t": 1})), stamp=KeyedStamper())
    assert "time" in json.loads(req.body or b"")
    assert req.retry_safe is True


FILE = Param("importBundle", "import_bundle", "multipart", "file", False)
EMAIL = Param("email", "email", "multipart", "string", False)
OPTIONS = Param("options", "options", "multipart", "hash", False)
OWNER = Param("ownerId", "owner_id", "multipart", "string", False, pattern=r"^[A-Fa-f\d]{24}$")
UPLOAD = op_with(FILE, EMAIL, OPTIONS, OWNER, method="POST", multipart=True)


async def test_multipart_parts_from_every_file_input(tmp_path: Path) -> None:
    file = tmp_path / "bundle.zip"
    file.write_bytes(b"PK\x03\x04zip")
    for value, name, content, ctype in [
        (b"raw bytes", "importBundle", b"raw bytes", "application/octet-stream"),
        (file, "bundle.zip", b"PK\x03\x04zip", "application/octet-stream"),
        (io.BytesIO(b"from io"), "importBundle", b"from io", "application/octet-stream"),
        (("named.zip", b"tuple"), "named.zip", b"tuple", "application/octet-stream"),
        (("typed.zip", b"typed", "application/zip"), "typed.zip", b"typed", "application/zip"),
    ]:
        req = prepare(UPLOAD, (value, "a@b.example", {"x": [1, True]}, APP_ID))
        assert req.body is None
        parts = await load_files(req.parts or ())
        assert parts[0] == Part("importBundle", content, name, ctype)
        assert parts[1] == Part("email", "a@b.example")
        assert json.loads(str(parts[2].value)) == {"x": [1, True]}
        assert parts[3] == Part("ownerId", APP_ID)


async def test_multipart_reads_a_binary_file_object_opened_by_the_caller(tmp_path: Path) -> None:
    file = tmp_path / "n.ipynb"
    file.write_bytes(b"{}")
    with file.open("rb") as handle:
        parts = await load_files(prepare(UPLOAD, (handle, None, None, None)).parts or ())
        assert parts[0].value == b"{}" and parts[0].filename == "n.ipynb"
        assert not handle.closed, "the caller's file stays the caller's to close"


def test_multipart_refuses_text_files_and_other_types(tmp_path: Path) -> None:
    file = tmp_path / "t.txt"
    file.write_text("x")
    with file.open("r") as text, pytest.raises(ValidationError, match="import_bundle"):
        prepare(UPLOAD, (text, None, None, None))
    with pytest.raises(ValidationError, match="import_bundle"):
        prepare(UPLOAD, (12, None, None, None))


def test_multipart_text_field_pattern_is_checked() -> None:
    with pytest.raises(InvalidIdError):
        prepare(UPLOAD, (b"x", None, None, "bad-owner"))


async def test_multipart_missing_file_path_raises_validation_error(tmp_path: Path) -> None:
    req = prepare(UPLOAD, (tmp_path / "missing.zip", None, None, None))
    with pytest.raises(ValidationError, match="cannot read"):
        await load_files(req.parts or ())


def test_path_placeholder_without_parameter_is_reported() -> None:
    op = Operation("r", "a", "GET", "/x/{nope}", (APP, DEV), {200: None})
    with pytest.raises(ValidationError, match="nope"):
        prepare(op, (APP_ID, DEVICE_ID))
