"""The generated Structs' shared base: decoding stays out of the cycle collector, secrets out of reprs."""

from __future__ import annotations

import gc

import msgspec

from losant_async import _json
from losant_async.rest.models import Device, Devices, LosantModel
from tests.unit.rest.rest_unit_helpers import device_json


def test_every_generated_struct_shares_the_base() -> None:
    assert issubclass(Device, LosantModel) and issubclass(Devices, LosantModel)


def test_decoded_structs_are_not_tracked_by_the_cycle_collector() -> None:
    page = _json.decode(msgspec.json.encode({"items": [device_json()], "count": 1}), Devices)
    assert not gc.is_tracked(page)
    assert isinstance(page.items, list) and not gc.is_tracked(page.items[0])


def test_credential_fields_are_redacted_but_flags_about_them_are_not() -> None:
    from losant_async.rest._model import _is_secret

    assert _is_secret("token") and _is_secret("api_key_secret") and _is_secret("new_password")
    assert not _is_secret("generate_token") and not _is_secret("has_password") and not _is_secret("name")
