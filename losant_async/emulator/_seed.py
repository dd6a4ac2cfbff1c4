"""A known world for the emulator: a seed file (TOML or JSON) of applications, devices, keys, tokens and users, read and written."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import _toml
from ..errors import ValidationError
from .store import Store

__all__ = ["apply_seed", "dump_seed", "export_world", "read_seed"]


def read_seed(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The world a seed file describes (``.toml`` as TOML, anything else as JSON)."""
    where = Path(path)
    try:
        text = where.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationError(f"cannot read seed {str(where)!r}: {exc.strerror}") from None
    if where.suffix.lower() == ".toml":
        try:
            world: Any = _toml.loads(text)
        except _toml.TOMLDecodeError as exc:
            raise ValidationError(f"seed {where} is not TOML: {exc}") from None
    else:
        try:
            world = json.loads(text)
        except ValueError as exc:
            raise ValidationError(f"seed {where} is not JSON: {exc}") from None
    if not isinstance(world, dict):
        raise ValidationError(f"seed {where} must hold an object with applications and users")
    unknown = set(world) - {"applications", "users"}
    if unknown:
        raise ValidationError(f"seed {where}: unknown keys {sorted(unknown)} (expected applications, users)")
    return world


def _items(where: str, value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ValidationError(f"seed {where} must be a list of objects")
    return value


def _opt(where: str, item: Mapping[str, Any], name: str) -> Any:
    value = item.get(name)
    if value is not None and not isinstance(value, str):
        raise ValidationError(f"seed {where}.{name} must be a string")
    return value


def apply_seed(store: Store, world: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Create what the seed describes and the store lacks (matched by id); returns the seed with
    every id, key, secret and token filled in, and how many objects were created."""
    created = 0
    for u, user in enumerate(_items("users", world.get("users"))):
        where = f"users[{u}]"
        if user.get("id") not in store.users:
            try:
                record = store.add_user(user.get("email"), user.get("password"), id=_opt(where, user, "id"))  # type: ignore[arg-type]
            except ValidationError as exc:
                raise ValidationError(f"seed {where}: {exc}") from None
            user["id"] = record.id
            created += 1
        for t, token in enumerate(_items(f"{where}.tokens", user.get("tokens"))):
            created += _token(store, f"{where}.tokens[{t}]", token, None, user["id"])
    for a, app in enumerate(_items("applications", world.get("applications"))):
        where = f"applications[{a}]"
        try:
            if app.get("id") not in store.applications:
                made = store.add_application(
                    app.get("name"), description=app.get("description") or "", id=_opt(where, app, "id")  # type: ignore[arg-type]
                )
                app["id"] = made.id
                created += 1
        except ValidationError as exc:
            raise ValidationError(f"seed {where}: {exc}") from None
        created += _devices(store, where, app)
        for k, key in enumerate(_items(f"{where}.keys", app.get("keys"))):
            created += _key(store, f"{where}.keys[{k}]", key, app)
        for t, token in enumerate(_items(f"{where}.tokens", app.get("tokens"))):
            created += _token(store, f"{where}.tokens[{t}]", token, app["id"], None)
    return world, created


def _devices(store: Store, where: str, app: dict[str, Any]) -> int:
    devices = _items(f"{where}.devices", app.get("devices"))
    by_name = {d.get("name"): d for d in devices}
    created = 0
    waiting = list(enumerate(devices))
    while waiting:
        still: list[tuple[int, dict[str, Any]]] = []
        for d, device in waiting:
            parent_id = device.get("parentId")
            parent_name = device.get("parent")
            if parent_id is None and parent_name is not None:
                parent = by_name.get(parent_name)
                if parent is None:
                    raise ValidationError(f"seed {where}.devices[{d}]: no device named {parent_name!r} for its parent")
                parent_id = parent.get("id")
                if parent_id is None or parent_id not in store.devices:
                    still.append((d, device))
                    continue
            if device.get("id") in store.devices:
                continue
            try:
                record = store.add_device(
                    app["id"], device.get("name"),  # type: ignore[arg-type]
                    device_class=device.get("deviceClass") or "standalone", parent_id=parent_id,
                    attributes=device.get("attributes"), tags=device.get("tags"),
                    description=device.get("description") or "", id=_opt(f"{where}.devices[{d}]", device, "id"),
                )
            except ValidationError as exc:
                raise ValidationError(f"seed {where}.devices[{d}]: {exc}") from None
            device["id"] = record.id
            created += 1
        if len(still) == len(waiting):
            raise ValidationError(f"seed {where}.devices: parents form a cycle ({', '.join(str(x.get('name')) for _, x in still)})")
        waiting = still
    return created


def _key(store: Store, where: str, key: dict[str, Any], app: dict[str, Any]) -> int:
    if key.get("key") in store.keys:
        return 0
    names = {d.get("name"): d.get("id") for d in _items("devices", app.get("devices"))}
    ids = key.get("deviceIds")
    if ids is None and key.get("devices") is not None:
        ids = [names.get(n, n) for n in key["devices"]]
    try:
        record = store.add_key(
            app["id"], device_ids=ids, device_tags=key.get("deviceTags"), name=key.get("name") or "",
            description=key.get("description") or "", filter_type=key.get("filterType") or "all",
            pub_topics=key.get("pubTopics") or (), sub_topics=key.get("subTopics") or (),
            id=_opt(where, key, "id"), key=_opt(where, key, "key"), secret=_opt(where, key, "secret"),
        )
    except ValidationError as exc:
        raise ValidationError(f"seed {where}: {exc}") from None
    key.update(id=record.id, key=record.key, secret=record.secret)
    return 1


def _token(store: Store, where: str, token: dict[str, Any], application_id: str | None, user_id: str | None) -> int:
    if token.get("token") in store.tokens:
        return 0
    default = ["all.User"] if user_id is not None else ["all.Application"]
    try:
        record = store.add_token(
            application_id=application_id, scopes=token.get("scopes") or default,
            kind="user" if user_id is not None else "api", user_id=user_id,
            name=token.get("name") or "", description=token.get("description") or "",
            id=_opt(where, token, "id"), token=_opt(where, token, "token"),
        )
    except ValidationError as exc:
        raise ValidationError(f"seed {where}: {exc}") from None
    token.update(id=record.id, token=record.token)
    return 1


def export_world(store: Store) -> dict[str, Any]:
    """The store's applications, devices, keys, API tokens and users in the seed format."""
    apps: list[dict[str, Any]] = []
    for app in store.applications.values():
        devices = [
            _clean({
                "id": d.id, "name": d.name, "description": d.description, "deviceClass": d.device_class,
                "parentId": d.parent_id, "tags": [{"key": k, "value": v} for k, v in d.tags],
                "attributes": [
                    _clean({"name": a.name, "dataType": a.data_type, "description": a.description,
                            "contentType": a.content_type, "attributeTags": a.attribute_tags})
                    for a in d.attributes.values()
                ],
            })
            for d in store.devices.values() if d.application_id == app.id
        ]
        keys = [
            _clean({
                "id": k.id, "key": k.key, "secret": k.secret, "name": k.name, "description": k.description,
                "deviceIds": list(k.device_ids) if k.device_ids is not None else None,
                "deviceTags": [{"key": t, "value": v} for t, v in k.device_tags] if k.device_tags is not None else None,
                "filterType": k.filter_type, "pubTopics": list(k.pub_topics), "subTopics": list(k.sub_topics),
            })
            for k in store.keys.values() if k.application_id == app.id
        ]
        tokens = [
            _clean({"id": t.id, "token": t.token, "name": t.name, "description": t.description, "scopes": list(t.scopes)})
            for t in store.tokens.values() if t.application_id == app.id and t.kind == "api"
        ]
        apps.append(_clean({"id": app.id, "name": app.name, "description": app.description,
                            "devices": devices, "keys": keys, "tokens": tokens}))
    users = [
        _clean({
            "id": u.id, "email": u.email, "password": u.password,
            "tokens": [{"id": t.id, "token": t.token} for t in store.tokens.values() if t.kind == "user" and t.user_id == u.id],
        })
        for u in store.users.values()
    ]
    return {"applications": apps, "users": users}


def _clean(item: dict[str, Any]) -> dict[str, Any]:
    """Without the keys that say nothing (None, empty), so a file reads like one written by hand."""
    return {k: v for k, v in item.items() if v is not None and v != "" and v != [] and v != {}}


def dump_seed(path: str | os.PathLike[str], world: Mapping[str, Any]) -> None:
    """Write a world as a seed file (TOML for ``.toml``, else JSON); private to the owner (it holds secrets)."""
    where = Path(path)
    text = _as_toml(world) if where.suffix.lower() == ".toml" else json.dumps(world, indent=2) + "\n"
    try:
        fd = os.open(where, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        raise ValidationError(f"cannot write {str(where)!r}: {exc.strerror}") from None


def _as_toml(world: Mapping[str, Any]) -> str:
    lines = ["# losant-async emulator world: applications, devices, keys, tokens, users (it holds secrets)"]
    for app in world.get("applications", []):
        lines += ["", "[[applications]]", *_pairs(app, skip=("devices", "keys", "tokens"))]
        for part in ("devices", "keys", "tokens"):
            for item in app.get(part, []):
                lines += ["", f"[[applications.{part}]]", *_pairs(item)]
    for user in world.get("users", []):
        lines += ["", "[[users]]", *_pairs(user, skip=("tokens",))]
        for token in user.get("tokens", []):
            lines += ["", "[[users.tokens]]", *_pairs(token)]
    return "\n".join(lines) + "\n"


def _pairs(item: Mapping[str, Any], skip: tuple[str, ...] = ()) -> list[str]:
    return [f"{_key_text(k)} = {_value(v)}" for k, v in item.items() if k not in skip and v is not None]


def _key_text(key: str) -> str:
    return key if key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key) else _string(key)


def _string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key_text(k)} = {_value(v)}" for k, v in value.items() if v is not None) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise ValidationError(f"a seed cannot hold {type(value).__name__} values")
