"""The base of every generated Struct (UNSET defaults, cheap decoding, redacted reprs) and its date type."""

from __future__ import annotations

import functools
import re
from datetime import datetime
from typing import Annotated, TypeAlias

from msgspec import UNSET, Meta, Struct

__all__ = ["AwareDatetime", "LosantModel"]

AwareDatetime: TypeAlias = Annotated[datetime, Meta(tz=True)]
"""A ``datetime`` that carries its time zone: a date-time field of a reply decodes
into one (Losant sends ISO 8601 with ``Z``); a date-time without a zone is a
``DecodeError``. Encoded back as ISO 8601 (``...Z`` for UTC)."""

# Field names that hold credentials (token, secret, password, private keys...), but not
# flags about them such as ``generate_token`` or ``has_password``.
_SECRET = re.compile(
    r"^(?!(generate|make|is|has)_)(.*_)?(token|secret|password|private_key|api_key|secret_access_key|secret_value)$"
)


@functools.cache
def _is_secret(field_name: str) -> bool:
    return _SECRET.match(field_name) is not None


class LosantModel(Struct, kw_only=True, omit_defaults=True, repr_omit_defaults=True, gc=False):
    """Base of every generated Struct.

    A field that a reply always carries (the schema requires it, or it is the
    entity's ``id`` or the collection's ``items``) has no default: a reply
    without it raises ``DecodeError`` naming the field. Every other field
    defaults to ``msgspec.UNSET``: a reply that leaves it out still decodes, and
    a request body built from a Struct sends only the fields that were set.
    Structs used in request bodies keep every field optional. Unknown fields in
    a reply are ignored. Date-time fields are ``AwareDatetime``. Credential
    fields are shown as ``<redacted>`` in the repr.

    ``gc=False``: instances are not tracked by Python's cycle collector, which
    makes decoding a large reply about 1.7x faster (a 100-device page otherwise
    triggers several collections while it is built). Decoded data cannot form
    reference cycles; do not build one by storing a Struct inside itself.
    """

    def __repr__(self) -> str:
        parts = []
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if value is UNSET:
                continue
            parts.append(f"{name}=<redacted>" if _is_secret(name) else f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"
