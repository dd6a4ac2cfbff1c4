"""Emulated device certificates and certificate authorities: PEMs checked, their info read from them (see ``_certs``)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from ...errors import ValidationError
from .._certs import CA_COLLECTION, CERT_COLLECTION, ca_fields, certificate_fields
from . import _engine
from ._common import Call, Handler, Server, iso

Fields = Callable[[Mapping[str, Any]], dict[str, Any]]


def _unique(srv: Server, application_id: str, fields: Mapping[str, Any], own_id: str | None = None) -> None:
    """One registration per certificate and application (Losant matches a connecting device's by it)."""
    fingerprint = (fields.get("certificateInfo") or {}).get("fingerprint")
    if fingerprint is None:
        return
    for doc in srv.store.docs.get(CERT_COLLECTION, {}).values():
        same = (doc.get("certificateInfo") or {}).get("fingerprint") == fingerprint
        if same and doc.get("applicationId") == application_id and doc.get("id") != own_id:
            raise ValidationError("certificate: already registered in this application")


def _post(collection: str, derive: Fields) -> Handler:
    async def post(srv: Server, call: Call) -> web.Response:
        kind = _engine.kinds()[collection]
        body = _engine.check_body(call)
        if not isinstance(body, dict):
            raise ValidationError("request body must be a JSON object")
        fields = derive(body)
        _unique(srv, call.params["applicationId"], fields)
        doc = _engine.new_doc(srv.store, kind, call.params, {"status": "active", **body, **fields})
        return _engine.reply(call.route.full_name, copy.deepcopy(doc))

    return post


def _patch(collection: str, derive: Fields) -> Handler:
    async def patch(srv: Server, call: Call) -> web.Response:
        kind = _engine.kinds()[collection]
        doc = _engine.require(srv, kind, call.params)
        body = _engine.check_body(call)
        if not isinstance(body, dict):
            raise ValidationError("request body must be a JSON object")
        fields = derive(body)
        _unique(srv, call.params["applicationId"], fields, own_id=doc.get("id"))
        protected = {"id", kind.id_field, *kind.parents, "creationDate"}
        doc.update({k: copy.deepcopy(v) for k, v in {**body, **fields}.items() if k not in protected})
        doc["lastUpdated"] = iso(srv.store.clock())
        return _engine.reply(call.route.full_name, copy.deepcopy(doc))

    return patch


HANDLERS: dict[str, Handler] = {
    "application_certificate_authorities.post": _post(CA_COLLECTION, ca_fields),
    "application_certificate_authority.patch": _patch(CA_COLLECTION, ca_fields),
    "application_certificates.post": _post(CERT_COLLECTION, certificate_fields),
    "application_certificate.patch": _patch(CERT_COLLECTION, certificate_fields),
}
