"""The store's credentials: access keys, API / device / user tokens, and user accounts."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from ...errors import ValidationError
from ._objects import ObjectStore
from ._records import (
    ID_PATTERN,
    KEY_FILTER_TYPES,
    ApiTokenRecord,
    DeviceRecord,
    KeyRecord,
    UnknownObjectError,
    UserRecord,
    new_token,
)

__all__ = ["AuthStore"]


class AuthStore(ObjectStore):
    """Credentials of the applications and users, and the checks made with them."""

    def add_key(
        self,
        application_id: str,
        *,
        device_ids: Iterable[str] | None = None,
        device_tags: Mapping[str, str] | Iterable[Mapping[str, str]] | None = None,
        name: str = "",
        description: str = "",
        filter_type: str = "all",
        pub_topics: Iterable[str] = (),
        sub_topics: Iterable[str] = (),
        id: str | None = None,
        key: str | None = None,
        secret: str | None = None,
    ) -> KeyRecord:
        """Create an access key (and its secret, unless given) for an application's devices."""
        self.application(application_id)
        if filter_type not in KEY_FILTER_TYPES:
            raise ValidationError(f"filter_type must be one of {sorted(KEY_FILTER_TYPES)}, not {filter_type!r}")
        pubs, subs = tuple(pub_topics), tuple(sub_topics)
        for topic in (*pubs, *subs):
            if not isinstance(topic, str) or not 1 <= len(topic) <= 1024:
                raise ValidationError(f"topic filter {topic!r} must be a string of 1 to 1024 characters")
        ids = tuple(device_ids) if device_ids is not None else None
        for device_id in ids or ():
            if not isinstance(device_id, str) or not ID_PATTERN.match(device_id):
                raise ValidationError(f"device id {device_id!r} is not 24 hex characters")
        tag_pairs = tuple(self.parse_tags(device_tags)) if device_tags is not None else None
        if key is not None and (not _credential(key) or key in self.keys):
            raise ValidationError("an access key must be 1 to 255 printable characters, not taken")
        if secret is not None and not _credential(secret):
            raise ValidationError("an access secret must be 1 to 255 printable characters")
        record = KeyRecord(
            id=self.fresh_id(id, {r.id: r for r in self.keys.values()}),
            application_id=application_id,
            key=secrets.token_hex(18) if key is None else key,
            secret=secrets.token_hex(32) if secret is None else secret,
            device_ids=ids,
            device_tags=tag_pairs,
            name=name,
            description=description,
            created=self.clock(),
            filter_type=filter_type,
            pub_topics=pubs,
            sub_topics=subs,
        )
        self.keys[record.key] = record
        return record

    def key_by_id(self, application_id: str, key_id: str) -> KeyRecord:
        """The application's access key with this id; UnknownObjectError when there is none."""
        for record in self.keys.values():
            if record.id == key_id and record.application_id == application_id:
                return record
        raise UnknownObjectError("Application key was not found")

    def check_key(self, key: str | None, secret: str | None, device: DeviceRecord) -> bool:
        """Whether key/secret are an active access key of the device's application that covers it."""
        if not key or secret is None:
            return False
        record = self.keys.get(key)
        if record is None or record.status != "active" or record.application_id != device.application_id:
            return False
        if not hmac.compare_digest(record.secret.encode(), secret.encode()):
            return False
        return self.key_covers(record, device)

    @staticmethod
    def key_covers(record: KeyRecord, device: DeviceRecord) -> bool:
        """Whether the key's device ids or tags (if any) include the device."""
        if record.device_ids is None and record.device_tags is None:
            return True
        if record.device_ids is not None and device.id in record.device_ids:
            return True
        if record.device_tags is not None:
            tags = set(device.tags)
            return any((k, v) in tags for k, v in record.device_tags)
        return False

    def add_token(
        self,
        *,
        application_id: str | None,
        scopes: Iterable[str],
        kind: str = "api",
        name: str = "",
        description: str = "",
        device_id: str | None = None,
        user_id: str | None = None,
        expires: int | None = None,
        id: str | None = None,
        token: str | None = None,
    ) -> ApiTokenRecord:
        """Create an API, device or user token (``token``, when given, is the secret itself)."""
        scope_tuple = tuple(scopes)
        if not scope_tuple or not all(isinstance(s, str) and s for s in scope_tuple):
            raise ValidationError("scopes must be a non-empty list of scope names")
        if token is not None and (not isinstance(token, str) or not 16 <= len(token) <= 4096 or not token.isprintable()
                                  or " " in token or token in self.tokens):
            raise ValidationError("a token must be 16 to 4096 printable characters without spaces, not taken")
        token_id = self.fresh_id(id, {r.id: r for r in self.tokens.values()})
        record = ApiTokenRecord(
            id=token_id,
            application_id=application_id,
            token=new_token(kind, device_id or user_id or token_id, self.clock()) if token is None else token,
            scopes=scope_tuple,
            name=name or kind,
            description=description,
            created=self.clock(),
            expires=expires,
            kind=kind,
            device_id=device_id,
            user_id=user_id,
        )
        self.tokens[record.token] = record
        return record

    def token(self, token: str | None) -> ApiTokenRecord | None:
        """The live token record, or None when unknown, inactive or expired."""
        if not token:
            return None
        record = self.tokens.get(token)
        if record is None or record.status != "active":
            return None
        if record.expires is not None and record.expires <= self.clock():
            return None
        return record

    def add_user(self, email: str, password: str, *, id: str | None = None) -> UserRecord:
        """Create a user account; ValidationError for a bad or taken email or an empty password."""
        if not isinstance(email, str) or "@" not in email:
            raise ValidationError("email must be an email address")
        if not isinstance(password, str) or not password:
            raise ValidationError("password must not be empty")
        if any(u.email.lower() == email.lower() for u in self.users.values()):
            raise ValidationError(f"a user with email {email} already exists")
        user = UserRecord(self.fresh_id(id, self.users), email, password, self.clock())
        self.users[user.id] = user
        return user

    def check_user(self, email: Any, password: Any) -> UserRecord | None:
        """The user with this email and password, or None."""
        if not isinstance(email, str) or not isinstance(password, str):
            return None
        for user in self.users.values():
            if user.email.lower() == email.lower() and hmac.compare_digest(user.password.encode(), password.encode()):
                return user
        return None


def _credential(value: object) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= 255 and value.isprintable() and " " not in value
