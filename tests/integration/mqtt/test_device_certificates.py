"""Devices that authenticate by X.509 certificate, against the emulator's TLS listener.

Losant's "Device Certificates" (docs.losant.com/devices/certificates): a device
certificate must be signed by a certificate authority stored in the
application, and is registered itself with a status (active/inactive), the
devices it may act as (ids, tags) and topic filters like an access key's.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from losant_async import Device, Gateway
from losant_async.errors import AuthenticationRefusedError, ValidationError
from losant_async.testing import Application, LocalLosant

pytestmark = pytest.mark.timeout(60)


class Clock:
    """The store's clock (epoch ms): the wall clock until a test moves it."""

    def __init__(self) -> None:
        self.offset = 0

    def __call__(self) -> int:
        return int(datetime.datetime.now(datetime.timezone.utc).timestamp() * 1000) + self.offset


@dataclass
class World:
    losant: LocalLosant
    app: Application
    clock: Clock
    device_ca: trustme.CA
    server_ca: trustme.CA
    tmp: Path

    def files(self, cert: trustme.LeafCert, name: str) -> tuple[Path, Path]:
        cert_path, key_path = self.tmp / f"{name}.pem", self.tmp / f"{name}.key"
        cert.cert_chain_pems[0].write_to_path(str(cert_path))
        cert.private_key_pem.write_to_path(str(key_path))
        return cert_path, key_path

    def device(self, device_id: str, cert: trustme.LeafCert, name: str = "device", **options: Any) -> Device:
        return Device(
            device_id, certificate=self.files(cert, name), host="127.0.0.1", port=self.losant.mqtt_port,
            tls_context=self._tls(), **options,
        )

    def _tls(self) -> ssl.SSLContext:
        # A context per device: the certificate is loaded into it.
        ctx = ssl.create_default_context()
        self.server_ca.configure_trust(ctx)
        return ctx


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    server_ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    clock = Clock()
    async with LocalLosant(mqtt_ssl=server_tls, clock=clock) as losant:
        app = losant.create_application(name="certificates")
        device_ca = trustme.CA(organization_name="device CA")
        app.create_certificate_authority(device_ca.cert_pem.bytes().decode(), name="fleet CA")
        yield World(losant, app, clock, device_ca, server_ca, tmp_path)


def _leaf(ca: trustme.CA, **options: Any) -> trustme.LeafCert:
    return ca.issue_cert("device.example", **options)


def _pem(cert: trustme.LeafCert) -> str:
    return cert.cert_chain_pems[0].bytes().decode()


async def test_a_registered_certificate_connects_and_reports_without_a_secret(world: World) -> None:
    device = world.app.create_device(name="sensor", attributes={"t": "number"})
    leaf = _leaf(world.device_ca)
    world.app.create_certificate(_pem(leaf), device_ids=[device.id])
    async with world.device(device.id, leaf) as sensor:
        await sensor.send_state({"t": 21.5})
        await sensor.flush()
    assert [s.data for s in world.losant.states(device.id)] == [{"t": 21.5}]


async def test_a_gateway_connects_by_certificate_too(world: World) -> None:
    # Restricted by tag, as an access key can be.
    gateway = world.app.create_device(name="gw", device_class="gateway", attributes={"up": "number"}, tags={"site": "a"})
    leaf = _leaf(world.device_ca)
    world.app.create_certificate(_pem(leaf), device_tags={"site": "a"})
    cert, key = world.files(leaf, "gw")
    async with Gateway(gateway.id, certificate=(cert, key), host="127.0.0.1", port=world.losant.mqtt_port,
                       tls_context=world._tls()) as gw:
        await gw.send_state({"up": 1})
        await gw.flush()
    assert [s.data for s in world.losant.states(gateway.id)] == [{"up": 1}]


async def test_the_certificate_s_topic_filters_apply_as_an_access_key_s(world: World) -> None:
    device = world.app.create_device(name="sensor")
    leaf = _leaf(world.device_ca)
    world.app.create_certificate(_pem(leaf), filter_type="whitelist", pub_topics=["allowed/#"])
    seen: list[str] = []
    assert world.losant._broker is not None
    stop = world.losant._broker.on_message(lambda client, topic, payload: seen.append(topic))
    try:
        async with world.device(device.id, leaf, qos=1) as sensor:
            await sensor.publish("denied/x", b"1", qos=1)
            await sensor.publish("allowed/x", b"2", qos=1)
            await sensor.flush()
    finally:
        stop()
    assert seen == ["allowed/x"]


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda w, cid: w.app.create_certificate(cid, status="inactive"), id="inactive"),
        pytest.param(lambda w, cid: None, id="not-registered"),
        pytest.param(lambda w, cid: w.app.create_certificate(cid, device_ids=["0" * 24]), id="other-device"),
        pytest.param(
            lambda w, cid: (w.app.create_certificate(cid), setattr(w.clock, "offset", 2 * 86_400_000)),
            id="expired-by-the-store-clock",
        ),
    ],
)
async def test_a_certificate_that_does_not_cover_the_device_is_refused_with_connack_5(
    world: World, spoil: Callable[[World, str], Any]
) -> None:
    device = world.app.create_device(name="sensor")
    leaf = _leaf(world.device_ca, not_after=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1))
    spoil(world, _pem(leaf))
    with pytest.raises(AuthenticationRefusedError) as refused:
        async with world.device(device.id, leaf, ready_timeout=10):
            pass
    assert refused.value.return_code == 5


async def test_an_inactive_ca_no_longer_admits_its_certificates(world: World) -> None:
    other_ca = trustme.CA(organization_name="retired CA")
    world.app.create_certificate_authority(other_ca.cert_pem.bytes().decode(), name="retired", status="inactive")
    device = world.app.create_device(name="sensor")
    leaf = _leaf(other_ca)
    world.app.create_certificate(_pem(leaf))
    with pytest.raises(AuthenticationRefusedError):
        async with world.device(device.id, leaf, ready_timeout=10):
            pass


def _connect_packet(client_id: str) -> bytes:
    def string(s: str) -> bytes:
        return struct.pack("!H", len(s)) + s.encode()

    body = string("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 15) + string(client_id)
    return bytes([0x10, len(body)]) + body


async def _connack_or_none(world: World, leaf: trustme.LeafCert) -> bytes | None:
    """The CONNACK a raw TLS client presenting ``leaf`` gets, or None when TLS refused it."""
    device = world.app.create_device(name="raw")
    ctx = ssl.create_default_context()
    world.server_ca.configure_trust(ctx)
    leaf.configure_cert(ctx)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", world.losant.mqtt_port, ssl=ctx), 10
        )
    except (ssl.SSLError, ConnectionError):
        return None
    try:
        writer.write(_connect_packet(device.id))
        return await asyncio.wait_for(reader.read(4), 10) or None
    except (ssl.SSLError, ConnectionError):
        return None
    finally:
        writer.close()


async def test_a_certificate_of_a_foreign_ca_fails_the_tls_handshake(world: World) -> None:
    foreign = trustme.CA(organization_name="nobody registered me")
    leaf = _leaf(foreign)
    world.app.create_certificate(_pem(leaf))  # registered, but its CA is not
    assert await _connack_or_none(world, leaf) is None


async def test_a_certificate_expired_by_the_wall_clock_fails_the_tls_handshake(world: World) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    leaf = _leaf(world.device_ca, not_before=now - datetime.timedelta(days=2), not_after=now - datetime.timedelta(days=1))
    world.app.create_certificate(_pem(leaf))
    assert await _connack_or_none(world, leaf) is None


async def test_a_registered_certificate_gets_connack_0_on_the_raw_protocol(world: World) -> None:
    leaf = _leaf(world.device_ca)
    world.app.create_certificate(_pem(leaf))
    assert await _connack_or_none(world, leaf) == b"\x20\x02\x00\x00"


def test_certificate_and_key_are_exclusive_and_need_tls(tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("device.example")
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    device_id = "0" * 24
    with pytest.raises(ValidationError, match="not both"):
        Device(device_id, "key", "secret", certificate=(cert, key))
    with pytest.raises(ValidationError, match="needs TLS"):
        Device(device_id, certificate=(cert, key), transport="tcp")
    with pytest.raises(ValidationError, match="no such file"):
        Device(device_id, certificate=(tmp_path / "missing.pem", key))
    with pytest.raises(ValidationError, match="cannot be used"):
        Device(device_id, certificate=(cert, cert))
    with pytest.raises(ValidationError, match="key"):
        Device(device_id)
    # A certificate's private key never shows in the repr.
    assert leaf.private_key_pem.bytes().decode().splitlines()[1] not in repr(Device(device_id, certificate=(cert, key)))
