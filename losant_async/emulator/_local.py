"""``LocalLosant``: the emulator's REST server and MQTT broker on 127.0.0.1, with provisioning and observation helpers."""

from __future__ import annotations

import asyncio
import os
import ssl as _ssl
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._extras import require_extra
from .._time import to_ejson_date
from ..errors import ValidationError
from ._limits import Limits, default_limits
from .store import (
    DEFAULT_MAX_COMMANDS,
    DEFAULT_MAX_STATES,
    DEFAULT_MAX_TOTAL_STATES,
    CommandRecord,
    ConnectionLogEntry,
    Counters,
    MemorySeries,
    StateRecord,
    Store,
    UnknownObjectError,
)

if TYPE_CHECKING:
    from aiohttp import web

    from ._broker import EmbeddedBroker
    from ._persist import Persistence
    from .console import Console

__all__ = [
    "AccessKey",
    "Application",
    "CommandRecord",
    "ConnectionLogEntry",
    "Counters",
    "Device",
    "LocalLosant",
    "StateRecord",
    "Store",
    "UnknownObjectError",
    "User",
]


@dataclass(frozen=True, slots=True)
class AccessKey:
    """An application access key: MQTT username / password, or ``POST /auth/device`` credentials."""

    id: str
    application_id: str
    key: str
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Device:
    """A device provisioned in the emulator."""

    id: str
    application_id: str
    name: str
    device_class: str
    parent_id: str | None = None


@dataclass(frozen=True, slots=True)
class User:
    """A user account provisioned in the emulator."""

    id: str
    email: str


@dataclass(frozen=True, slots=True)
class Application:
    """A provisioned application; its methods add devices, keys and tokens to it."""

    id: str
    name: str
    _store: Store = field(repr=False, compare=False)

    def create_device(
        self,
        name: str,
        *,
        device_class: str = "standalone",
        parent_id: str | None = None,
        attributes: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
        description: str = "",
    ) -> Device:
        """A device; ``attributes`` maps name -> data type (number, string, boolean, gps, blob)."""
        record = self._store.add_device(
            self.id,
            name,
            device_class=device_class,
            parent_id=parent_id,
            attributes=attributes,
            tags=tags,
            description=description,
        )
        return Device(record.id, self.id, record.name, record.device_class, record.parent_id)

    def create_access_key(
        self,
        *,
        device_ids: Iterable[str] | None = None,
        device_tags: Mapping[str, str] | None = None,
        name: str = "",
        filter_type: str = "all",
        pub_topics: Iterable[str] = (),
        sub_topics: Iterable[str] = (),
    ) -> AccessKey:
        """An access key for every device of the application, or only the given ones.

        ``filter_type`` limits the topics outside ``losant/``, as Losant's
        ``filterType``: ``all`` (any), ``none`` (no custom topics), ``whitelist``
        (only ``pub_topics`` / ``sub_topics``) or ``blacklist`` (all but those).
        """
        record = self._store.add_key(
            self.id, device_ids=device_ids, device_tags=device_tags, name=name,
            filter_type=filter_type, pub_topics=pub_topics, sub_topics=sub_topics,
        )
        return AccessKey(record.id, self.id, record.key, record.secret)

    def create_certificate_authority(self, ca_bundle: str, *, name: str = "CA", status: str = "active") -> str:
        """Register a certificate authority (PEM bundle) whose device certificates may connect; its id."""
        from ._certs import CA_COLLECTION, ca_fields

        return self._add(CA_COLLECTION, {"name": name, "status": status, "caBundle": ca_bundle}, ca_fields)

    def create_certificate(
        self,
        certificate: str,
        *,
        device_ids: Iterable[str] | None = None,
        device_tags: Mapping[str, str] | None = None,
        status: str = "active",
        filter_type: str = "none",
        pub_topics: Iterable[str] = (),
        sub_topics: Iterable[str] = (),
    ) -> str:
        """Register a device certificate (PEM); its id. Devices, tags and topics as for an access key."""
        from ._certs import CERT_COLLECTION, certificate_fields

        body: dict[str, Any] = {
            "certificate": certificate, "status": status, "filterType": filter_type,
            "pubTopics": list(pub_topics), "subTopics": list(sub_topics),
        }
        if device_ids is not None:
            body["deviceIds"] = list(device_ids)
        if device_tags is not None:
            body["deviceTags"] = [{"key": k, "value": v} for k, v in device_tags.items()]
        return self._add(CERT_COLLECTION, body, certificate_fields)

    def _add(self, collection: str, body: dict[str, Any], derive: Any) -> str:
        from ._rest._engine import kinds, new_doc

        doc = new_doc(self._store, kinds()[collection], {"applicationId": self.id}, {**body, **derive(body)})
        return str(doc["id"])

    def create_api_token(self, *, scopes: Iterable[str] = ("all.Application",), name: str = "test token") -> str:
        """An application API token with the given scopes."""
        if isinstance(scopes, str):
            raise ValidationError("scopes must be a list of scope names, not one string")
        return self._store.add_token(application_id=self.id, scopes=scopes, name=name).token


class LocalLosant:
    """Losant's REST API and MQTT broker on 127.0.0.1, with an in-memory store.

    Ports default to 0 (ephemeral); ``ws_port=None`` disables MQTT over WebSockets.
    ``throttle=True`` turns Losant's rate limits on: over MQTT 30 messages / 15 s per
    topic and direction and 300 per connection (disconnect, then a ban of 30 s that
    doubles for repeat offenders up to 1 hour) and 300 new connections / 15 s per
    application; over REST 30 sendState / sendCommand per 15 s per device (429 with
    Retry-After). ``clock`` (epoch ms) replaces the wall clock for the time rules, the
    throttle and the bans, so tests can move time instead of sleeping. ``mqtt_ssl``
    serves the MQTT listeners (TCP and WebSockets) over TLS; the context is set to ask
    clients for a certificate (optional) and to trust the CAs applications register,
    for device certificates (``Application.create_certificate_authority``). ``limits`` bounds what
    peers can make it hold or wait for (packet sizes, deadlines, connection caps,
    output per session, bodies, JSON nesting); the defaults fit the process's
    descriptor limit, and docs/emulator.md lists them all.

    In memory each device keeps its newest ``max_states`` states (and at most its share of
    ``max_total_states`` over all devices) and ``max_commands`` commands (and as many
    connection log entries), none older than Losant's 30 days; older ones are dropped,
    oldest first, and counted (``counters.states_evicted``, ``commands_evicted``).

    ``data_dir`` keeps everything in a SQLite database in that directory instead: started
    again on it, the emulator has the same applications, devices, ids, keys, tokens,
    documents, files and history (30 days of it, on disk). The directory is locked while
    the emulator runs (a second one on it raises ``DataDirError``); writes are committed
    every 0.2 s, so only what was accepted in the last moment before a ``kill -9`` is lost.
    """

    def __init__(
        self,
        *,
        rest_port: int = 0,
        mqtt_port: int = 0,
        ws_port: int | None = 0,
        throttle: bool = False,
        host: str = "127.0.0.1",
        clock: Callable[[], int] | None = None,
        mqtt_ssl: _ssl.SSLContext | None = None,
        limits: Limits | None = None,
        max_states: int = DEFAULT_MAX_STATES,
        max_commands: int = DEFAULT_MAX_COMMANDS,
        max_total_states: int = DEFAULT_MAX_TOTAL_STATES,
        data_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        require_extra("emulator", "jsonschema", feature="LocalLosant")
        for name, port in (("rest_port", rest_port), ("mqtt_port", mqtt_port), ("ws_port", ws_port)):
            if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535):
                raise ValidationError(f"{name} must be a port number 0 to 65535")
        self.store: Store = Store(clock=clock, series=MemorySeries(
            max_states=max_states, max_commands=max_commands, max_total_states=max_total_states
        ))
        self._host = host
        self._rest_port = rest_port
        self._mqtt_port = mqtt_port
        self._ws_port = ws_port
        self._throttle = throttle
        self._mqtt_ssl = mqtt_ssl
        self.limits: Limits = limits or default_limits()
        """Every server-side bound (docs/emulator.md lists them); defaults fit the descriptor limit."""
        self._broker: EmbeddedBroker | None = None
        self._runner: web.AppRunner | None = None
        self._rest: Any = None
        self._rest_bound = 0
        self._waiters: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}
        self._unlisten: Callable[[], None] | None = None
        self._console: Console | None = None
        self._started = False
        self._data_dir = data_dir
        self._persistence: Persistence | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> LocalLosant:
        if self._started:
            raise RuntimeError("this LocalLosant is already running")
        from aiohttp import web

        from ._broker import EmbeddedBroker
        from ._http_listener import GuardedSite, Listener
        from ._persist import health_middleware
        from ._rest import RestApp
        from .console import Console

        self._started = True
        try:
            if self._data_dir is not None:
                self._open_data_dir(self._data_dir)
            self._broker = EmbeddedBroker(
                self.store,
                host=self._host,
                port=self._mqtt_port,
                ws_port=self._ws_port,
                throttle=self._throttle,
                ssl=self._mqtt_ssl,
                limits=self.limits,
            )
            await self._broker.start()
            self._rest = RestApp(self.store, self._deliver_command, throttle=self._throttle, limits=self.limits)
            self._rest.on_device_deleted = self._broker.disconnect
            self._rest.on_credentials_changed = self._broker.revalidate
            listener = Listener(self.limits, self.store.counters)
            self._rest.peer_watch = listener.watch
            app = self._rest.build()
            app.middlewares.append(health_middleware(self.health))
            self._console = Console(self.store, self._deliver_command, banned_until=self._broker.rules.banned_until)
            self._console.mount(app)
            self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
            await self._runner.setup()
            site = GuardedSite(self._runner, self._host, self._rest_port, listener)
            await site.start()
            self._rest_bound = self._runner.addresses[0][1]
            self._rest.broker = self._broker
            self._rest.base_url = f"http://{self._host}:{self._rest_bound}"
        except BaseException:
            await asyncio.shield(self._close())
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.shield(self._close())

    def _open_data_dir(self, path: str | os.PathLike[str]) -> None:
        from ._persist import Persistence

        self._persistence = Persistence(self.store, path)

    def health(self) -> dict[str, Any]:
        """What ``GET /health`` answers: ``ok`` while everything accepted reaches the store (and the
        data directory), ``failing`` once a write to the data directory failed."""
        data = self._persistence.data if self._persistence is not None else None
        failure = data.failure if data is not None else None
        broker = self._broker
        return {
            "status": "failing" if failure else "ok",
            "applications": len(self.store.applications),
            "devices": len(self.store.devices),
            "devicesConnected": sum(1 for d in self.store.devices if broker is not None and broker.is_connected(d)),
            "dataDir": self.data_dir,
            "writesQueued": data.queued if data is not None else 0,
            "writeFailure": failure,
            "counters": self.store.counters.as_dict(),
        }

    @property
    def data_dir(self) -> str | None:
        """The data directory in use, or None (everything in memory)."""
        return None if self._persistence is None else str(self._persistence.data.path)

    async def _close(self) -> None:
        if self._console is not None:
            self._console.close()
        if self._rest is not None:
            self._rest.close_streams()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._broker is not None:
            await self._broker.stop()
            self._broker = None
        if self._persistence is not None:
            await self._persistence.close()
            self._persistence = None
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        for waiters in self._waiters.values():
            for _, future in waiters:
                if not future.done():
                    future.cancel()
        self._waiters.clear()
        self._started = False

    # -- addresses -----------------------------------------------------------------------------

    def _require(self) -> EmbeddedBroker:
        if self._broker is None:
            raise RuntimeError("LocalLosant is not running: use it as `async with LocalLosant() as losant`")
        return self._broker

    @property
    def rest_url(self) -> str:
        self._require()
        return f"http://{self._host}:{self._rest_bound}"

    @property
    def mqtt_host(self) -> str:
        return self._host

    @property
    def mqtt_port(self) -> int:
        return self._require().port

    @property
    def ws_port(self) -> int | None:
        return self._require().ws_port

    @property
    def console_url(self) -> str:
        """The web console's login link (``<rest_url>/console/login?token=...``): it holds the
        console token, so only whoever sees it opens the console. Print it; never log it."""
        self._require()
        assert self._console is not None
        return self.rest_url + self._console.login_path

    @property
    def counters(self) -> Counters:
        """What was accepted, dropped and refused so far."""
        return self.store.counters

    # -- provisioning ----------------------------------------------------------------------------

    def create_application(self, name: str = "demo", *, description: str = "", owner: User | None = None) -> Application:
        """An application; with ``owner`` only that user's tokens reach it (unowned ones: every user's)."""
        record = self.store.add_application(name, description=description, owner_id=owner.id if owner else None)
        return Application(record.id, record.name, self.store)

    def add_object(self, collection: str, document: Mapping[str, Any] | None = None, **parents: str) -> dict[str, Any]:
        """Store an object of any catalog collection (``"data_tables"``, ``"instances"``...) as its
        ``post`` would, under the given parent ids (``applicationId=...``); returns the stored document."""
        from ._rest._engine import kinds, new_doc

        kind = kinds().get(collection)
        if kind is None:
            raise ValidationError(f"{collection!r} is not a collection of the catalog")
        missing = [p for p in kind.parents if p not in parents]
        if missing:
            raise ValidationError(f"{collection} objects live under {', '.join(missing)}: pass them")
        return new_doc(self.store, kind, parents, dict(document or {}))

    def create_user(self, email: str, password: str) -> User:
        """Create a user account that can log in with ``email`` and ``password``."""
        record = self.store.add_user(email, password)
        return User(record.id, record.email)

    def user_token(self, user: User) -> str:
        """A new user token for ``user``; UnknownObjectError when the user does not exist."""
        if user.id not in self.store.users:
            raise UnknownObjectError(f"no user {user.id}")
        return self.store.add_token(application_id=None, scopes=["all.User"], kind="user", user_id=user.id).token

    # -- observation -----------------------------------------------------------------------------

    def states(self, device_id: str) -> list[StateRecord]:
        """Every stored state of the device, oldest first."""
        return self.store.states(device_id, descending=False)

    def composite_state(self, device_id: str) -> dict[str, Any]:
        """Attribute -> latest value."""
        return {name: value for name, (value, _t) in self.store.composite_state(device_id).items()}

    def commands_sent(self, device_id: str) -> list[CommandRecord]:
        """The commands sent to the device, oldest first."""
        return self.store.commands(device_id)

    def connection_log(self, device_id: str) -> list[ConnectionLogEntry]:
        """The device's MQTT connects and disconnects, oldest first."""
        return self.store.connection_log(device_id)

    def webhook_url(self, token: str) -> str:
        """Where a webhook with this ``token`` receives requests (Losant's triggers URL, served locally)."""
        return f"{self.rest_url}/webhooks/{token}"

    def webhook_requests(self, webhook_id: str) -> list[dict[str, Any]]:
        """The requests a webhook received, oldest first: time, method, path, query, headers, body (bytes)."""
        found = self.store.docs.get("webhook_requests", {}).get(webhook_id, {})
        return list(found.get("requests", []))

    def is_connected(self, device_id: str) -> bool:
        """Whether the device has a live MQTT connection to the emulator's broker."""
        return self._broker is not None and self._broker.is_connected(device_id)

    async def wait_for_states(self, device_id: str, count: int, timeout: float = 5) -> list[StateRecord]:
        """Wait until the device has ``count`` accepted states; TimeoutError after ``timeout`` seconds."""
        if self.store.accepted_count(device_id) < count:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            entry = (count, future)
            self._waiters.setdefault(device_id, []).append(entry)
            if self._unlisten is None:
                # Listening only while someone waits: a listener makes the store build a record
                # of every state (4 % of the emulator's CPU at 3,000 devices) for nobody.
                self._unlisten = self.store.on_state(self._on_state)
            try:
                await asyncio.wait_for(asyncio.shield(future), timeout)
            except asyncio.TimeoutError:
                have = self.store.accepted_count(device_id)
                raise TimeoutError(f"device {device_id} has {have} of {count} states after {timeout} s") from None
            finally:
                waiters = self._waiters.get(device_id, [])
                if entry in waiters:
                    waiters.remove(entry)
                if not waiters:
                    self._waiters.pop(device_id, None)
                if not self._waiters and self._unlisten is not None:
                    self._unlisten()
                    self._unlisten = None
        return self.states(device_id)

    def _on_state(self, record: StateRecord) -> None:
        waiters = self._waiters.get(record.device_id)
        if not waiters:
            return
        have = self.store.accepted_count(record.device_id)
        for count, future in waiters:
            if have >= count and not future.done():
                future.set_result(None)

    async def send_command(self, device_id: str, name: str, payload: Any = None, *, time: int | None = None) -> None:
        """Send a command as Losant would: recorded, then delivered on ``losant/<id>/command``."""
        self.store.device(device_id)
        await self._deliver_command(device_id, name, payload, time)

    async def _deliver_command(self, device_id: str, name: str, payload: Any, time: int | None) -> None:
        broker = self._require()
        record = self.store.record_command(device_id, name, payload, time)
        await broker.publish_command(device_id, name, payload, record.time)

    @staticmethod
    def ejson_date(ms: int) -> dict[str, str]:
        """The ``{"$date": ...}`` form commands carry (handy in assertions)."""
        return to_ejson_date(ms)
