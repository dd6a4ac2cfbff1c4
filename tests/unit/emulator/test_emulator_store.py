"""The emulator's store and filters, without sockets: Losant's time and type rules, queries, relations."""

from __future__ import annotations

import json

import pytest

from losant_async.emulator._query import device_matches, parse_brackets, wildcard_match
from losant_async.emulator.store import DAY_MS, Store, UnknownObjectError
from losant_async.errors import ValidationError

NOW = 1_800_000_000_000


@pytest.fixture
def store() -> Store:
    return Store(clock=lambda: NOW)


@pytest.fixture
def world(store: Store):
    app = store.add_application("a")
    device = store.add_device(app.id, "d", attributes={"n": "number", "b": "boolean", "s": "string"}, tags={"floor": "3"})
    return app, device


def test_ids_are_24_hex(world) -> None:
    app, device = world
    for value in (app.id, device.id):
        assert len(value) == 24
        int(value, 16)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (NOW - 5000, NOW - 5000),  # epoch ms
        ((NOW - 5000) / 1000, NOW - 5000),  # epoch seconds
        (-5000, NOW - 5000),  # ms before now
        ({"$date": "2027-01-15T07:59:55.000Z"}, NOW - 5000),
        ("2027-01-15T07:59:55Z", NOW - 5000),
        (None, NOW),
        ("garbage", NOW),
    ],
)
def test_every_time_form_losant_accepts(store: Store, world, raw, expected: int) -> None:
    _, device = world
    body = {"data": {"n": 1}} if raw is None else {"data": {"n": 1}, "time": raw}
    assert store.record_state(device, body) == 1
    assert store.states(device.id)[0].time == expected


def test_old_and_future_states_are_dropped_and_counted(store: Store, world) -> None:
    _, device = world
    kept = store.record_state(
        device,
        [
            {"data": {"n": 1}, "time": NOW - 30 * DAY_MS - 1},
            {"data": {"n": 2}, "time": NOW - 30 * DAY_MS},
            {"data": {"n": 3}, "time": NOW + DAY_MS},
            {"data": {"n": 4}, "time": NOW + DAY_MS + 1},
        ],
    )
    assert kept == 2
    assert [s.data["n"] for s in store.states(device.id, descending=False)] == [2, 3]
    assert (store.counters.states_too_old, store.counters.states_too_new) == (1, 1)


def test_same_millisecond_overwrites_only_what_it_carries(store: Store, world) -> None:
    _, device = world
    store.record_state(device, {"data": {"n": 1, "b": True}, "time": NOW})
    store.record_state(device, {"data": {"n": 2}, "time": NOW})
    assert [s.data for s in store.states(device.id)] == [{"n": 2, "b": True}]
    assert store.accepted_count(device.id) == 2


def test_replaying_a_state_is_idempotent(store: Store, world) -> None:
    _, device = world
    for _ in range(3):
        store.record_state(device, {"data": {"n": 7}, "time": NOW - 10})
    assert len(store.states(device.id)) == 1


def test_undefined_attributes_are_ignored(store: Store, world) -> None:
    _, device = world
    store.record_state(device, {"data": {"n": 1, "unknown": 5}})
    assert store.states(device.id)[0].data == {"n": 1}
    assert store.counters.attributes_ignored == 1


@pytest.mark.parametrize(
    ("data", "stored"),
    [
        ({"n": "21.5"}, {"n": 21.5}),
        ({"n": 3}, {"n": 3}),
        ({"b": "true"}, {"b": True}),
        ({"b": 0}, {"b": False}),
        ({"s": 12}, {"s": "12"}),
    ],
)
def test_values_that_convert_cleanly_are_accepted(store: Store, world, data, stored) -> None:
    _, device = world
    store.record_state(device, {"data": data})
    assert store.states(device.id)[0].data == stored


@pytest.mark.parametrize("data", [{"n": "warm"}, {"n": True}, {"b": "maybe"}, {"b": 2}, {"s": {"x": 1}}, {"n": float("nan")}])
def test_a_wrong_type_rejects_the_whole_report(store: Store, world, data) -> None:
    _, device = world
    with pytest.raises(ValidationError):
        store.record_state(device, [{"data": {"n": 1}}, {"data": data}])
    assert store.states(device.id) == []
    assert store.counters.states_invalid == 1


@pytest.mark.parametrize("body", [{}, {"data": 5}, [], "text", [{"data": {}}, 3]])
def test_malformed_states_are_rejected(store: Store, world, body) -> None:
    _, device = world
    with pytest.raises(ValidationError):
        store.record_state(device, body)


def test_history_range_limit_and_order(store: Store, world) -> None:
    _, device = world
    store.record_state(device, [{"data": {"n": i}, "time": NOW - 1000 * i} for i in range(10)])
    newest = store.states(device.id, limit=3)
    assert [s.data["n"] for s in newest] == [0, 1, 2]
    window = store.states(device.id, start=NOW - 5000, end=NOW - 2000, descending=False)
    assert [s.data["n"] for s in window] == [5, 4, 3, 2]
    assert [s.data["n"] for s in store.states(device.id, start=NOW - 5000, limit=2, descending=False)] == [5, 4]
    assert store.states(device.id, start=NOW + 1) == []


def test_composite_keeps_the_newest_value_per_attribute(store: Store, world) -> None:
    _, device = world
    store.record_state(device, {"data": {"n": 2, "b": True}, "time": NOW - 1000})
    store.record_state(device, {"data": {"n": 1}, "time": NOW - 5000})  # late but older: not current
    store.record_state(device, {"data": {"s": "x"}, "time": NOW})
    assert store.composite_state(device.id) == {"n": (2, NOW - 1000), "b": (True, NOW - 1000), "s": ("x", NOW)}
    assert store.composite_state(device.id, end=NOW - 2000) == {"n": (1, NOW - 5000)}


def test_listeners_see_accepted_states_only(store: Store, world) -> None:
    _, device = world
    seen = []
    remove = store.on_state(seen.append)
    store.record_state(device, {"data": {"n": 1}})
    store.record_state(device, {"data": {"n": 1}, "time": NOW - 40 * DAY_MS})
    remove()
    store.record_state(device, {"data": {"n": 2}})
    assert [r.data for r in seen] == [{"n": 1}]


def test_keys_cover_devices_by_id_or_tag(store: Store, world) -> None:
    app, device = world
    other = store.add_device(app.id, "o")
    every = store.add_key(app.id)
    by_id = store.add_key(app.id, device_ids=[other.id])
    by_tag = store.add_key(app.id, device_tags={"floor": "3"})
    assert store.check_key(every.key, every.secret, device)
    assert not store.check_key(every.key, "wrong", device)
    assert not store.check_key(by_id.key, by_id.secret, device) and store.check_key(by_id.key, by_id.secret, other)
    assert store.check_key(by_tag.key, by_tag.secret, device) and not store.check_key(by_tag.key, by_tag.secret, other)
    assert every.secret not in repr(every)


def test_a_gateway_reports_for_peripherals_below_it(store: Store, world) -> None:
    app, device = world
    gateway = store.add_device(app.id, "gw", device_class="gateway")
    child = store.add_device(app.id, "p", device_class="peripheral", parent_id=gateway.id)
    other_gateway = store.add_device(app.id, "gw2", device_class="gateway")
    assert store.reports_for(gateway, child.id)
    assert store.reports_for(gateway, gateway.id)
    assert not store.reports_for(gateway, device.id)
    assert not store.reports_for(other_gateway, child.id)
    assert not store.reports_for(device, child.id)


def test_tokens_expire_and_users_check_passwords(store: Store) -> None:
    token = store.add_token(application_id=None, scopes=["all.User"], expires=NOW)
    assert store.token(token.token) is None
    live = store.add_token(application_id=None, scopes=["all.User"])
    assert store.token(live.token) is live
    store.add_user("a@example.com", "pw")
    assert store.check_user("A@example.com", "pw") is not None
    assert store.check_user("a@example.com", "nope") is None
    with pytest.raises(ValidationError):
        store.add_user("a@example.com", "other")


def test_unknown_objects_raise_a_lookup_error(store: Store) -> None:
    with pytest.raises(UnknownObjectError):
        store.application("f" * 24)
    with pytest.raises(LookupError):
        store.device("f" * 24)


# -- filters ---------------------------------------------------------------------------------------


def test_bracketed_query_keys_rebuild_objects_and_lists() -> None:
    items = [("tagFilter[0][key]", "floor"), ("tagFilter[0][value]", "3"), ("tagFilter[1][key]", "x"), ("other", "1")]
    assert parse_brackets(items, "tagFilter") == [{"key": "floor", "value": "3"}, {"key": "x"}]
    assert parse_brackets([("deviceClass", "gateway")], "deviceClass") == "gateway"
    assert parse_brackets([("deviceClass[0]", "a"), ("deviceClass[1]", "b")], "deviceClass") == ["a", "b"]
    assert parse_brackets(items, "missing") is None


def test_wildcards() -> None:
    assert wildcard_match("temp*", "Temperature")
    assert wildcard_match("*ure", "temperature")
    assert not wildcard_match("temp", "temperature")


def test_advanced_device_queries(store: Store, world) -> None:
    app, device = world
    gateway = store.add_device(app.id, "gateway-1", device_class="gateway", tags={"floor": "4"})
    cases = [
        ({"name": "d"}, {device.id}),
        ({"name": {"$ne": "d"}}, {gateway.id}),
        ({"name": {"$like": "gate*"}}, {gateway.id}),
        ({"id": {"$in": [device.id]}}, {device.id}),
        ({"deviceClass": {"$in": ["gateway", "peripheral"]}}, {gateway.id}),
        ({"tags": {"floor": "3"}}, {device.id}),
        ({"tags": {"$tagKey": "floor", "$tagValue": {"$in": ["3", "4"]}}}, {device.id, gateway.id}),
        ({"$or": [{"name": "d"}, {"deviceClass": "gateway"}]}, {device.id, gateway.id}),
        ({"$and": [{"name": {"$like": "*"}}, {"deviceClass": {"$eq": "standalone"}}]}, {device.id}),
        ({"$nor": [{"name": "d"}]}, {gateway.id}),
        ({"name": {"$eq": "D", "$ci": True}}, {device.id}),
    ]
    for query, expected in cases:
        json.dumps(query)  # every case is what a client would send
        got = {d.id for d in (device, gateway) if device_matches(d, query)}
        assert got == expected, query
    with pytest.raises(ValidationError):
        device_matches(device, {"name": {"$regex": "x"}})
    with pytest.raises(ValidationError):
        device_matches(device, {"color": "red"})


def test_tokens_are_shaped_like_losants_jwts_and_never_read_as_an_option(world, store: Store) -> None:
    import base64

    app, device = world
    tokens = [store.add_token(application_id=app.id, scopes=["all.Application"]) for _ in range(300)]
    tokens.append(store.add_token(application_id=app.id, scopes=["all.Device"], kind="device", device_id=device.id))
    for record in tokens:
        header, claims, signature = record.token.split(".")
        assert claims
        assert header.startswith("eyJ") and signature
        assert json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["typ"] == "JWT"
        assert store.token(record.token) is record
    device_claims = tokens[-1].token.split(".")[1]
    assert json.loads(base64.urlsafe_b64decode(device_claims + "=" * (-len(device_claims) % 4)))["sub"] == device.id
    assert len({r.token for r in tokens}) == len(tokens)
