"""Where a simulation runs: the embedded emulator provisioned for it, or devices on real Losant."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import LosantError, ValidationError
from ..simulator import (
    SENSOR_ATTRIBUTES,
    GatewayGroup,
    Shard,
    SimulationConfig,
    Target,
    device_name,
    plan_gateways,
    shard_range,
)
from ._args import SimulateArgs, parse_broker, read_device_ids
from ._emulator_host import SIMULATOR_TAG

if TYPE_CHECKING:
    from ..emulator import LocalLosant
    from ..rest import LosantClient

__all__ = ["DemoWorld", "provision_demo", "real_targets"]


def _device_id(device: Any) -> str:
    for name in ("id", "device_id"):
        value = getattr(device, name, None)
        if isinstance(value, str):
            return value
    if isinstance(device, Mapping):
        return str(device.get("id") or device.get("deviceId"))
    raise LosantError("the API returned a device without an ID")


async def _existing_devices(client: LosantClient, application_id: str, device_class: str) -> list[Any]:
    found = []
    async for dev in client.devices.get(
        application_id=application_id,
        tag_filter=[{"key": "simulator", "value": SIMULATOR_TAG}],
        device_class=device_class,
    ):
        found.append(dev)
    return found


async def _create_device(client: LosantClient, application_id: str, body: dict[str, Any]) -> str:
    dev = await client.devices.post(application_id=application_id, device=body)
    return _device_id(dev)


async def _provision_real(
    client: LosantClient, application_id: str, config: SimulationConfig, shards: Sequence[Shard]
) -> list[tuple[list[str], list[GatewayGroup]]]:
    """Per shard: reuse devices tagged by earlier runs (by name), create the missing ones, tagged."""
    tags = [{"key": "simulator", "value": SIMULATOR_TAG}]
    attributes = [{"name": n, "dataType": t} for n, t in SENSOR_ATTRIBUTES.items()]
    out: list[tuple[list[str], list[GatewayGroup]]] = []
    if not config.gateway:
        by_name: dict[str, str] = {}
        for dev in await _existing_devices(client, application_id, "standalone"):
            name = getattr(dev, "name", None) or (dev.get("name") if isinstance(dev, Mapping) else None)
            if isinstance(name, str):
                by_name.setdefault(name, _device_id(dev))
        for shard in shards:
            found: list[str] = []
            for i in shard_range(config.devices, shard):
                name = device_name(i)
                if name not in by_name:
                    by_name[name] = await _create_device(client, application_id, {
                        "name": name, "deviceClass": "standalone", "attributes": attributes, "tags": tags,
                    })
                found.append(by_name[name])
            out.append((found, []))
        return out
    # Gateway layouts depend on the rate, so gateway runs always build a fresh layout.
    for shard in shards:
        indices = iter(shard_range(config.devices, shard))
        size_all = len(shard_range(config.devices, shard))
        groups: list[GatewayGroup] = []
        ids: list[str] = []
        for g, size in enumerate(plan_gateways(size_all, config.rate, throttled=config.throttle)):
            gw = await _create_device(client, application_id, {
                "name": f"sim-gateway-{shard.index:03d}-{g:04d}", "deviceClass": "gateway", "tags": tags,
            })
            members: list[str] = []
            for _ in range(size):
                members.append(await _create_device(client, application_id, {
                    "name": device_name(next(indices)), "deviceClass": "peripheral",
                    "gatewayId": gw, "attributes": attributes, "tags": tags,
                }))
            ids.extend(members)
            groups.append(GatewayGroup(gateway_id=gw, peripheral_ids=tuple(members)))
        out.append((ids, groups))
    return out


def _fleet_from_file(args: SimulateArgs, shards: Sequence[Shard]) -> list[tuple[list[str], list[GatewayGroup]]]:
    assert args.device_ids_file is not None
    config = args.config
    rows = read_device_ids(args.device_ids_file, gateway=config.gateway)
    if len(rows) < config.devices:
        raise ValidationError(
            f"--device-ids lists {len(rows)} devices but --devices asks for {config.devices}"
        )
    rows = rows[: config.devices]
    out: list[tuple[list[str], list[GatewayGroup]]] = []
    gateway_shard: dict[str, Shard] = {}
    for shard in shards:
        part = [rows[i] for i in shard_range(config.devices, shard)]
        ids = [r[0] for r in part]
        if not config.gateway:
            out.append((ids, []))
            continue
        by_gateway: dict[str, list[str]] = {}
        for pid, gid in part:
            assert gid is not None
            if gateway_shard.setdefault(gid, shard) != shard:
                # Two shards would each open a connection as this gateway and displace each other.
                raise ValidationError(f"gateway {gid} has peripherals in two shards: list each gateway's "
                                      "peripherals together, or use fewer shards")
            by_gateway.setdefault(gid, []).append(pid)
        out.append((ids, [GatewayGroup(g, tuple(p)) for g, p in by_gateway.items()]))
    return out


async def real_targets(args: SimulateArgs, shards: Sequence[Shard]) -> list[Target]:
    """The targets of ``shards`` on real Losant: devices from ``--device-ids`` or found/created with the token."""
    creds, config = args.credentials, args.config
    assert creds.application is not None and creds.url is not None and creds.broker is not None
    broker = parse_broker(creds.broker) if config.transport == "mqtt" else None
    if args.device_ids_file is not None:
        fleets = _fleet_from_file(args, shards)
    else:
        from ..rest import LosantClient

        assert creds.token is not None
        async with LosantClient(creds.token, url=creds.url) as client:
            fleets = await _provision_real(client, creds.application, config, shards)
    return [
        Target(
            application_id=creds.application,
            device_ids=tuple(ids),
            gateways=tuple(groups),
            key=creds.key,
            secret=creds.secret,
            mqtt_host=broker.host if broker else None,
            mqtt_port=broker.port if broker else None,
            mqtt_transport=broker.transport if broker else "tcp",
            rest_url=creds.url,
            api_token=creds.token,
            stored=None,
            embedded=False,
        )
        for ids, groups in fleets
    ]


@dataclass(frozen=True, slots=True)
class DemoWorld:
    """What ``losant-async emulator`` provisions and prints."""

    application_id: str
    application_name: str
    key: str
    secret: str
    token: str
    devices: list[tuple[str, str, str]]
    """(name, id, class)."""


def provision_demo(losant: LocalLosant) -> DemoWorld:
    """A small demo application: three sensors, a gateway with two peripherals, a key and a token."""
    app = losant.create_application(name="demo")
    key = app.create_access_key()
    token = app.create_api_token(scopes=["all.Application"])
    attributes = dict(SENSOR_ATTRIBUTES)
    devices: list[tuple[str, str, str]] = []
    for i in range(1, 4):
        dev = app.create_device(name=f"sensor-{i}", device_class="standalone", attributes=attributes,
                                tags={"kind": "sensor"})
        devices.append((f"sensor-{i}", dev.id, "standalone"))
    gw = app.create_device(name="gateway-1", device_class="gateway", tags={"kind": "gateway"})
    devices.append(("gateway-1", gw.id, "gateway"))
    for i in range(1, 3):
        dev = app.create_device(name=f"peripheral-{i}", device_class="peripheral", parent_id=gw.id,
                                attributes=attributes, tags={"kind": "peripheral"})
        devices.append((f"peripheral-{i}", dev.id, "peripheral"))
    return DemoWorld(
        application_id=app.id,
        application_name="demo",
        key=key.key,
        secret=key.secret,
        token=token,
        devices=devices,
    )
