"""Test certificates for the demo: a CA, a TLS certificate for the emulator's MQTT listener, and a device certificate."""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._extras import import_extra

__all__ = ["CertificateFiles", "make_test_certificates", "server_tls_context"]


@dataclass(frozen=True)
class CertificateFiles:
    """Where ``make_test_certificates`` wrote each PEM file."""

    ca: Path
    ca_key: Path
    server: Path
    server_key: Path
    device: Path
    device_key: Path

    @classmethod
    def in_directory(cls, directory: Path) -> CertificateFiles:
        d = Path(directory)
        return cls(d / "ca.pem", d / "ca.key", d / "server.pem", d / "server.key", d / "device.pem", d / "device.key")


def make_test_certificates(directory: Path, *, device_name: str = "device", days: int = 365) -> CertificateFiles:
    """A test CA and two certificates it signs, as PEM files in ``directory`` (keys readable by the owner only).

    ``server.pem`` is for 127.0.0.1 and localhost (the emulator's TLS listener);
    ``device.pem`` (common name ``device_name``) is a client certificate: register
    ``ca.pem`` as a certificate authority and ``device.pem`` as a device certificate
    of the application, then connect with ``Device(id, certificate=(device.pem, device.key))``.
    Test material only: the CA key sits beside its certificate.
    """
    x509 = import_extra("cryptography.x509", feature="making test certificates")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    files = CertificateFiles.in_directory(directory)
    files.ca.parent.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)

    def name(common: str) -> Any:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "losant-async test"),
                          x509.NameAttribute(NameOID.COMMON_NAME, common)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("losant-async test CA")
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(common: str, usage: Any, alt: list[Any] | None) -> tuple[Any, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder().subject_name(name(common)).issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if alt:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    server, server_key = leaf(
        "127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
    )
    device, device_key = leaf(device_name, ExtendedKeyUsageOID.CLIENT_AUTH, None)

    def write_cert(path: Path, cert: Any) -> None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def write_key(path: Path, key: Any) -> None:
        data = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)

    write_cert(files.ca, ca)
    write_key(files.ca_key, ca_key)
    write_cert(files.server, server)
    write_key(files.server_key, server_key)
    write_cert(files.device, device)
    write_key(files.device_key, device_key)
    return files


def server_tls_context(files: CertificateFiles) -> Any:
    """A TLS server context presenting ``server.pem`` (the emulator's MQTT listener)."""
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.server, files.server_key)
    return context
