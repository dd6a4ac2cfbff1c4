"""Seed files: a known world created from TOML or JSON (given or generated ids and secrets), exported back the same."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from losant_async.emulator._seed import apply_seed, dump_seed, export_world, read_seed
from losant_async.emulator.store import Store
from losant_async.errors import ValidationError

APP_ID = "a" * 24
GW_ID = "b" * 24
USER_ID = "c" * 24

SEED = {
    "applications": [{
        "id": APP_ID,
        "name": "factory",
        "description": "line 1",
        "devices": [
            {"name": "p1", "deviceClass": "peripheral", "parent": "gw",
             "attributes": {"temperature": "number", "label": "string"}, "tags": {"floor": "3"}},
            {"id": GW_ID, "name": "gw", "deviceClass": "gateway", "tags": [{"key": "site", "value": "n"}, {"key": "site", "value": "s"}]},
        ],
        "keys": [
            {"key": "fixed-key", "secret": "fixed-secret", "devices": ["gw"], "filterType": "whitelist", "pubTopics": ["a/b"]},
            {"name": "generated"},
        ],
        "tokens": [{"name": "ci", "token": "fixed-token-0123456789", "scopes": ["all.Application.read"]}],
    }],
    "users": [{"id": USER_ID, "email": "dev@example.com", "password": "pw", "tokens": [{"token": "user-token-0123456789"}]}],
}


def _seeded() -> tuple[Store, dict[str, object]]:
    store = Store()
    world, created = apply_seed(store, json.loads(json.dumps(SEED)))
    assert created == 8
    return store, world


def test_a_seed_creates_the_world_with_the_ids_and_secrets_it_gives() -> None:
    store, _ = _seeded()
    assert store.applications[APP_ID].description == "line 1"
    gateway = store.devices[GW_ID]
    assert gateway.tags == [("site", "n"), ("site", "s")]
    (peripheral,) = [d for d in store.devices.values() if d.name == "p1"]
    assert peripheral.parent_id == GW_ID and set(peripheral.attributes) == {"temperature", "label"}
    key = store.keys["fixed-key"]
    assert key.secret == "fixed-secret" and key.device_ids == (GW_ID,) and key.pub_topics == ("a/b",)
    assert store.check_key("fixed-key", "fixed-secret", gateway)
    assert store.token("fixed-token-0123456789") is not None
    assert store.tokens["fixed-token-0123456789"].scopes == ("all.Application.read",)
    user_token = store.token("user-token-0123456789")
    assert user_token is not None and user_token.user_id == USER_ID
    assert store.check_user("dev@example.com", "pw") is not None


def test_what_a_seed_lacks_is_generated_and_filled_in() -> None:
    store, world = _seeded()
    app = world["applications"][0]  # type: ignore[index]
    generated = app["keys"][1]
    assert store.keys[generated["key"]].secret == generated["secret"]
    assert all(len(d["id"]) == 24 for d in app["devices"])


def test_applying_a_filled_in_seed_again_creates_nothing() -> None:
    store, world = _seeded()
    again, created = apply_seed(store, world)  # type: ignore[arg-type]
    assert created == 0 and again == world
    assert len(store.devices) == 2 and len(store.keys) == 2


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_export_then_seed_round_trips(tmp_path: Path, suffix: str) -> None:
    store, _ = _seeded()
    path = tmp_path / f"world{suffix}"
    dump_seed(path, export_world(store))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds secrets
    copy = Store()
    _, created = apply_seed(copy, read_seed(path))
    assert created == 8
    assert export_world(copy) == export_world(store)
    for name in ("applications", "devices", "keys", "users"):
        assert getattr(copy, name).keys() == getattr(store, name).keys()
    assert {t.token for t in copy.tokens.values()} == {t.token for t in store.tokens.values()}
    assert copy.keys["fixed-key"].secret == "fixed-secret"


def test_an_exported_string_survives_toml_quoting(tmp_path: Path) -> None:
    store = Store()
    app = store.add_application('quote " back \\ tab \t del \x7f emoji \U0001f600')
    store.add_device(app.id, "d", tags={"k": "line\nbreak"})
    path = tmp_path / "w.toml"
    dump_seed(path, export_world(store))
    assert read_seed(path)["applications"] == export_world(store)["applications"]


@pytest.mark.parametrize(
    ("seed", "message"),
    [
        ({"applications": [{"name": "a", "devices": [{"name": "p", "deviceClass": "peripheral", "parent": "nope"}]}]},
         r"applications\[0\]\.devices\[0\]: no device named 'nope'"),
        ({"applications": [{"name": "a", "devices": [{"name": "d", "deviceClass": "toaster"}]}]},
         r"applications\[0\]\.devices\[0\]: device class must be one of"),
        ({"applications": [{"id": "xyz", "name": "a"}]}, r"applications\[0\]: id 'xyz' is not 24 hex"),
        ({"applications": [{"name": "a", "keys": [{"key": "has space"}]}]}, r"keys\[0\]: an access key must be"),
        ({"users": [{"email": "nobody", "password": "x"}]}, r"users\[0\]: email must be an email address"),
        ({"applications": "many"}, r"applications must be a list of objects"),
    ],
)
def test_a_bad_seed_names_what_is_wrong(seed: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        apply_seed(Store(), seed)


def test_a_seed_file_with_unknown_keys_or_bad_syntax_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    path.write_text('{"applicatons": []}')
    with pytest.raises(ValidationError, match="unknown keys"):
        read_seed(path)
    path.write_text("{")
    with pytest.raises(ValidationError, match="is not JSON"):
        read_seed(path)
    with pytest.raises(ValidationError, match="cannot read seed"):
        read_seed(tmp_path / "missing.json")
