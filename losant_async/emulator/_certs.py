"""Device certificates: what the MQTT TLS listener trusts, and the CONNECT check against the application's CAs and certificates.

Losant ("Device Certificates", docs.losant.com/devices/certificates): a device
may authenticate to the broker with an X.509 client certificate instead of an
access key. The certificate must be signed by a certificate authority stored in
the application (``application_certificate_authorities``) and be registered
itself (``application_certificates``); a registered certificate has a status
(active/inactive), may name its devices (ids, tags) and limits the topics
outside ``losant/`` as an access key does (``filterType``, ``pubTopics``,
``subTopics``).

How the emulator applies it (where the docs are silent, written here and in
docs/emulator.md):

- the TLS listener asks for a client certificate but does not demand one
  (access keys keep working on the same port). OpenSSL checks a presented
  certificate during the handshake against every CA any application
  registered: one no registered CA signed, or one expired by the wall clock,
  fails the handshake (alert ``unknown_ca`` / ``certificate_expired``);
- at CONNECT the client id names the device; the certificate must be one the
  device's application registered (same SHA-256 fingerprint), active, valid at
  the store's clock, signed directly by an active CA of that application, and
  cover the device (its ``deviceIds`` / ``deviceTags``; neither: every
  device). Otherwise CONNACK 5 (not authorized), as for a bad key. Username and
  password are ignored once a certificate is presented;
- a certificate without ``filterType`` allows no custom topics (``none``),
  the least it could mean; peripherals, clean sessions, bans and the connection
  rate are checked exactly as for an access key.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import ssl
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .._extras import import_extra
from ..errors import ValidationError
from .store import DeviceRecord, KeyRecord

if TYPE_CHECKING:
    from cryptography import x509

    from ._mqtt_codec import Connect
    from ._rules import Admission, Rules
    from .store import Store

__all__ = ["CA_COLLECTION", "CERT_COLLECTION", "DeviceCertificates", "ca_fields", "certificate_fields"]

_log = logging.getLogger("losant_async.testing.mqtt")

CA_COLLECTION = "application_certificate_authorities"
CERT_COLLECTION = "application_certificates"
KEY_PREFIX = "certificate:"
"""How the access key that stands in for a certificate's session is named (never in ``Store.keys``)."""
_PEM_END = "-----END CERTIFICATE-----"
_MAX_CERTS_PER_BUNDLE = 32


def _x509() -> Any:
    return import_extra("cryptography.x509", feature="device certificates")


def parse_pems(text: Any, what: str) -> list[x509.Certificate]:
    """Every certificate of a PEM text; ValidationError naming ``what`` when there is none or one is broken."""
    mod = _x509()
    if not isinstance(text, str) or _PEM_END not in text:
        raise ValidationError(f"{what}: not a PEM certificate")
    try:
        certs: list[x509.Certificate] = mod.load_pem_x509_certificates(text.encode())
    except ValueError:
        raise ValidationError(f"{what}: not a PEM certificate") from None
    if len(certs) > _MAX_CERTS_PER_BUNDLE:
        raise ValidationError(f"{what}: at most {_MAX_CERTS_PER_BUNDLE} certificates")
    return certs


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _info(cert: x509.Certificate) -> dict[str, Any]:
    """Losant's ``certificateInfo`` / ``caInfo`` entry for one certificate."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return {
        "serialNumber": format(cert.serial_number, "x"),
        "fingerprint": cert.fingerprint(hashes.SHA256()).hex(),
        "commonName": str(common[0].value) if common else "",
        "issuerName": cert.issuer.rfc4514_string(),
        "notValidBefore": _iso(cert.not_valid_before_utc),
        "notValidAfter": _iso(cert.not_valid_after_utc),
    }


def ca_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """A CA's fields as stored: the bundle checked, ``caInfo`` read from it."""
    if "caBundle" not in body:
        return {}
    return {"caInfo": [_info(c) for c in parse_pems(body["caBundle"], "caBundle")]}


def certificate_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """A device certificate's fields as stored: exactly one certificate, and ``certificateInfo`` read from it."""
    if "certificate" not in body:
        return {}
    certs = parse_pems(body["certificate"], "certificate")
    if len(certs) != 1:
        raise ValidationError("certificate: exactly one certificate, not a bundle")
    return {"certificateInfo": _info(certs[0])}


class DeviceCertificates:
    """The certificate side of the MQTT listener: its trust store, and the check at CONNECT."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._trusted: set[str] = set()
        """Fingerprints of the CA certificates already in the listener's trust store."""
        self._bundles: dict[str, tuple[str, list[x509.Certificate]]] = {}
        """CA document id -> (its bundle text, its parsed certificates)."""

    def prepare(self, context: ssl.SSLContext) -> None:
        """Ask clients for a certificate (optional) and trust every registered CA, also those added later.

        OpenSSL calls the servername callback early in every handshake (with or
        without SNI), before it checks the client's certificate: the CAs registered
        since the last handshake are added there.
        """
        if context.verify_mode == ssl.CERT_NONE:
            context.verify_mode = ssl.CERT_OPTIONAL
        previous = context.sni_callback

        # typeshed says str; without SNI (an IP address) it is None, passed on as is.
        def on_hello(sock: ssl.SSLObject, name: str, ctx: ssl.SSLContext) -> int | None:
            try:
                self.trust(ctx)
            except Exception:  # a broken bundle must not cost the handshake of everyone else
                _log.exception("loading the registered certificate authorities failed")
            return previous(sock, name, ctx) if previous is not None else None

        context.sni_callback = on_hello
        self.trust(context)

    def trust(self, context: ssl.SSLContext) -> None:
        """Add the CA certificates registered since the last call to ``context``'s trust store."""
        docs = self._store.docs.get(CA_COLLECTION)
        if not docs:
            return
        from cryptography.hazmat.primitives import serialization

        for doc in docs.values():
            for cert in self._bundle(doc):
                fingerprint = cert.fingerprint(_sha256()).hex()
                if fingerprint not in self._trusted:
                    self._trusted.add(fingerprint)
                    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
                    context.load_verify_locations(cadata=pem)

    def _bundle(self, doc: Mapping[str, Any]) -> list[x509.Certificate]:
        text = doc.get("caBundle")
        cached = self._bundles.get(str(doc.get("id")))
        if cached is not None and cached[0] == text:
            return cached[1]
        try:
            certs = parse_pems(text, "caBundle")
        except ValidationError:
            certs = []
        self._bundles[str(doc.get("id"))] = (text if isinstance(text, str) else "", certs)
        return certs

    # -- CONNECT ---------------------------------------------------------------------------------

    def connect(self, rules: Rules, request: Connect, der: bytes) -> Admission:
        """Admit a CONNECT whose TLS peer presented ``der``; CONNACK 5 when the certificate does not cover it."""
        from ._rules import NOT_AUTHORIZED, Admission

        store = self._store
        device = store.devices.get(request.client_id) if request.client_id else None
        key, why = self.key_for(der, device) if device is not None else (None, "no such device")
        if key is None:
            store.counters.mqtt_connects_refused += 1
            _log.info("certificate connect of %r refused: %s", request.client_id, why)
            return Admission(NOT_AUTHORIZED)
        # Everything after the credentials (peripherals, clean session, bans, the connection rate)
        # is the access keys' path: the certificate stands in as a key for this one check.
        store.keys[key.key] = key
        try:
            return rules.connect(dataclasses.replace(request, username=key.key, password=key.secret))
        finally:
            store.keys.pop(key.key, None)

    def key_for(self, der: bytes, device: DeviceRecord) -> tuple[KeyRecord | None, str]:
        """The certificate's permissions as an access key, or None and why it does not admit ``device``."""
        try:
            cert = _x509().load_der_x509_certificate(der)
        except ValueError:
            return None, "unreadable certificate"
        now = datetime.fromtimestamp(self._store.clock() / 1000, tz=timezone.utc)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            return None, "certificate expired or not yet valid"
        fingerprint = cert.fingerprint(_sha256()).hex()
        app = device.application_id
        doc = next(
            (
                d
                for d in self._store.docs.get(CERT_COLLECTION, {}).values()
                if d.get("applicationId") == app and (d.get("certificateInfo") or {}).get("fingerprint") == fingerprint
            ),
            None,
        )
        if doc is None:
            return None, "certificate not registered in the device's application"
        if doc.get("status", "active") != "active":
            return None, "certificate inactive"
        if not self._signed_by_active_ca(cert, app, now):
            return None, "no active certificate authority of the application signed it"
        key = KeyRecord(
            id=str(doc["id"]),
            application_id=app,
            key=f"{KEY_PREFIX}{doc['id']}:{secrets.token_hex(8)}",
            secret=secrets.token_hex(16),
            device_ids=_ids(doc.get("deviceIds")),
            device_tags=_tags(doc.get("deviceTags")),
            name=str(doc.get("name") or ""),
            description=str(doc.get("description") or ""),
            created=self._store.clock(),
            filter_type=str(doc.get("filterType") or "none"),
            pub_topics=tuple(str(t) for t in doc.get("pubTopics") or ()),
            sub_topics=tuple(str(t) for t in doc.get("subTopics") or ()),
        )
        if not self._store.key_covers(key, device):
            return None, "certificate does not cover this device"
        return key, ""

    def _signed_by_active_ca(self, cert: x509.Certificate, application_id: str, now: datetime) -> bool:
        for doc in self._store.docs.get(CA_COLLECTION, {}).values():
            if doc.get("applicationId") != application_id or doc.get("status", "active") != "active":
                continue
            for ca in self._bundle(doc):
                if not ca.not_valid_before_utc <= now <= ca.not_valid_after_utc:
                    continue
                try:
                    cert.verify_directly_issued_by(ca)
                except (ValueError, TypeError, _invalid_signature()):
                    continue
                return True
        return False


def _sha256() -> Any:
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


def _invalid_signature() -> type[Exception]:
    from cryptography.exceptions import InvalidSignature

    return InvalidSignature


def _ids(value: Any) -> tuple[str, ...] | None:
    return tuple(str(v) for v in value) if isinstance(value, list) and value else None


def _tags(value: Any) -> tuple[tuple[str, str], ...] | None:
    if not isinstance(value, list) or not value:
        return None
    return tuple((str(t.get("key")), str(t.get("value"))) for t in value if isinstance(t, dict))


def certificate_live(store: Store, key: KeyRecord, device: DeviceRecord) -> bool:
    """Whether the certificate a session stands on is still registered and active in the device's application."""
    doc = store.docs.get(CERT_COLLECTION, {}).get(key.id)
    return (
        doc is not None
        and doc.get("applicationId") == device.application_id
        and doc.get("status", "active") == "active"
    )
