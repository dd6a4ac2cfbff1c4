"""Where a simulation runs: the embedded emulator provisioned for it, or devices on real Losant."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from ..errors import LosantError, ValidationError
from ..simulator import (
    SENSOR_ATTRIBUTES,
    FleetType,
    GatewayGroup,
    Shard,
    SimulationConfig,
    Target,
    shard_range,
)
from ._args import SimulateArgs, parse_broker, read_device_ids
from ._emulator_host import SIMULATOR_TAG

if TYPE_CHECKING:
    from ..emulator import LocalLosant
    from ..rest import LosantClient

__all__ = ["DemoWorld", "provision_demo", "provision_fleet", "real_targets"]

_CREATE_CONCURRENCY = 16
"""Device creations in flight at once while provisioning over REST."""


def _device_id(device: Any) -> str:
    for name in ("id", "device_id"):
        value = getattr(device, name, None)
        if isinstance(value, str):
            return value
    if isinstance(device, Mapping):
        return str(device.get("id") or device.get("deviceId"))
    raise LosantError("the API returned a device without an ID")


async def _existing_devices(client: LosantClient, application_id: str, device_class: str) -> list[Any]:
    """Devices of ``device_class`` that earlier runs created (tagged as the simulator's)."""
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


async def provision_fleet(
    client: LosantClient, application_id: str, config: SimulationConfig, shards: Sequence[Shard], *,
    reuse: bool = True,
) -> list[tuple[list[str], list[GatewayGroup]]]:
    """Per shard, the scenario's devices over REST: direct devices tagged by earlier runs are reused (by name),
    the missing ones created, tagged; gateways and their peripherals are created afresh (their layout
    depends on the rate and the shards)."""
    types = config.types()
    base_tags = {"simulator": SIMULATOR_TAG}

    def body(t: FleetType, name: str, device_class: str, gateway_id: str | None = None) -> dict[str, Any]:
        tags = {**t.spec.tags, **base_tags}
        out: dict[str, Any] = {
            "name": name, "deviceClass": device_class,
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
        }
        if device_class != "gateway":
            out["attributes"] = [{"name": n, "dataType": dt} for n, dt in t.attribute_types().items()]
        if gateway_id is not None:
            out["gatewayId"] = gateway_id
        return out

    by_name: dict[tuple[str, str], str] = {}
    if reuse:
        for cls in sorted({t.device_class for t in types if not t.via_gateway}):
            for dev in await _existing_devices(client, application_id, cls):
                name = getattr(dev, "name", None) or (dev.get("name") if isinstance(dev, Mapping) else None)
                if isinstance(name, str):
                    by_name.setdefault((cls, name), _device_id(dev))
    limiter = anyio.CapacityLimiter(_CREATE_CONCURRENCY)

    async def create(slot: list[str], at: int, request: dict[str, Any]) -> None:
        async with limiter:
            slot[at] = await _create_device(client, application_id, request)

    out: list[tuple[list[str], list[GatewayGroup]]] = []
    for shard in shards:
        specs = dataclasses.replace(config, shard=shard).specs()
        ids = [""] * len(specs)
        position = {s.index: k for k, s in enumerate(specs)}
        planned = config.gateways_of(shard)
        gateway_ids = [""] * len(planned)
        async with anyio.create_task_group() as tg:
            for k, g in enumerate(planned):
                tg.start_soon(create, gateway_ids, k, body(types[g.kind], g.name, "gateway"))
        async with anyio.create_task_group() as tg:
            for k, g in enumerate(planned):
                for i in g.members:
                    spec = specs[position[i]]
                    tg.start_soon(create, ids, position[i],
                                  body(types[g.kind], spec.name, "peripheral", gateway_ids[k]))
            for k, spec in enumerate(specs):
                t = types[spec.kind]
                if t.via_gateway:
                    continue
                known = by_name.get((t.device_class, spec.name))
                if known is not None:
                    ids[k] = known
                else:
                    tg.start_soon(create, ids, k, body(t, spec.name, t.device_class))
        groups = [GatewayGroup(gateway_id=gid, peripheral_ids=tuple(ids[position[i]] for i in g.members))
                  for gid, g in zip(gateway_ids, planned, strict=True)]
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
    broker = parse_broker(creds.broker) if "mqtt" in config.transports else None
    if args.device_ids_file is not None:
        fleets = _fleet_from_file(args, shards)
    else:
        from ..rest import LosantClient

        assert creds.token is not None
        async with LosantClient(creds.token, url=creds.url) as client:
            fleets = await provision_fleet(client, creds.application, config, shards)
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
