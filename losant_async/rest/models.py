"""The public home of every response and request Struct of the REST API (``losant_async.rest.models``).

Each JSON Schema of the Losant API is a ``msgspec.Struct`` here (or a type
alias, for schemas that are not one object shape), named after the schema in
PascalCase: ``device`` is :class:`Device`, ``devicePost`` is
:class:`DevicePost`, an inline object is named after its path
(``DeviceConnectionInfo``). The classes are generated from the vendored spec
(``make generate``) into a private module; import them from here.

How the fields are typed:

- a field a reply always carries (the schema requires it, or it is an
  entity's ``id`` or a collection's ``items``) has its plain type, and a reply
  without it raises :class:`losant_async.errors.DecodeError` naming the field
  and the action;
- every other field is ``T | UnsetType`` and is ``msgspec.UNSET`` when the
  reply leaves it out (test with ``is UNSET``, or ``msgspec.UNSET`` is falsy);
- date-time fields are :data:`AwareDatetime`;
- Structs used in request bodies keep every field optional, so a partial body
  can be built; unset fields are not sent.
"""

from __future__ import annotations

import losant_async.rest._generated.models as _models
from losant_async.rest._generated.models import *  # noqa: F403

__all__: list[str] = []
__all__ += _models.__all__  # the generated module's list, in a form pyright and mypy both follow
