"""Local MQTT brokers for tests: mosquitto on ephemeral ports, or embedded amqtt when it is absent."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import os
import shutil
import socket
import ssl
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None
)
if os.environ.get("LOSANT_TEST_BROKER") == "amqtt":  # run the suite as on a machine without mosquitto
    MOSQUITTO = None

__all__ = ["MOSQUITTO", "AmqttBroker", "Broker", "MosquittoBroker", "TLSMaterial", "free_port", "running_broker"]


def free_port() -> int:
    """A port nobody listens on right now (the broker may still lose a race for it: callers retry)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_accepting(host: str, port: int, timeout: float = 10.0) -> None:
    """Return once ``host:port`` accepts a TCP connection (polls connect, not a fixed sleep)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.005
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            if loop.time() > deadline:
                raise TimeoutError(f"nothing accepted on {host}:{port} within {timeout} s") from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
        else:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return


@dataclass
class TLSMaterial:
    """A trustme CA and a server certificate for 127.0.0.1/localhost, written to files."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    client_context: ssl.SSLContext

    @classmethod
    def create(cls, directory: Path) -> TLSMaterial:
        import trustme

        ca = trustme.CA()
        server = ca.issue_cert("127.0.0.1", "localhost")
        ca_file = directory / "ca.pem"
        cert_file = directory / "server.pem"
        key_file = directory / "server.key"
        ca.cert_pem.write_to_path(str(ca_file))
        server.private_key_pem.write_to_path(str(key_file))
        # mosquitto wants the chain in the certfile
        with open(cert_file, "wb") as fh:
            for blob in server.cert_chain_pems:
                fh.write(blob.bytes())
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)
        return cls(ca_file, cert_file, key_file, ctx)


def mosquitto_password_line(username: str, password: str) -> str:
    """A mosquitto 2.x password file line (PBKDF2-SHA512, ``$7$``), made without mosquitto_passwd."""
    salt = os.urandom(12)
    iterations = 101
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return f"{username}:$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


@dataclass
class Broker:
    """What a test needs to know about a running broker."""

    kind: str
    host: str = "127.0.0.1"
    port: int = 0
    ws_port: int | None = None
    tls_port: int | None = None
    wss_port: int | None = None
    tls: TLSMaterial | None = None

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def restart(self) -> None:
        """Stop, then start again on the same ports (clients see a broker restart)."""
        await self.stop()
        await self.start()


@dataclass
class MosquittoBroker(Broker):
    """mosquitto as a subprocess on ephemeral loopback ports."""

    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mosq-")))
    websockets: bool = False
    with_tls: bool = False
    users: dict[str, str] | None = None
    persistence: bool = False
    _proc: asyncio.subprocess.Process | None = None
    _log: Path | None = None

    def _config(self) -> str:
        # Unbounded queues: a slow test subscriber must not lose QoS 1 messages to mosquitto's default cap of 1000.
        lines = ["per_listener_settings false", "log_dest stderr", "log_type error", "max_queued_messages 0"]
        if self.users is not None:
            pw = self.directory / "passwords"
            pw.write_text("".join(mosquitto_password_line(u, p) + "\n" for u, p in self.users.items()))
            # When run as root mosquitto drops to its own user, which must be able to read it.
            os.chmod(pw, 0o644)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        if self.persistence:  # persistent sessions and their queued messages survive a restart
            lines += ["persistence true", f"persistence_location {self.directory}/", "autosave_interval 0"]
        lines.append(f"listener {self.port} 127.0.0.1")
        if self.ws_port is not None:
            lines += [f"listener {self.ws_port} 127.0.0.1", "protocol websockets"]
        if self.tls is not None:
            certs = [f"cafile {self.tls.ca_file}", f"certfile {self.tls.cert_file}", f"keyfile {self.tls.key_file}"]
            if self.tls_port is not None:
                lines += [f"listener {self.tls_port} 127.0.0.1", *certs]
            if self.wss_port is not None:
                lines += [f"listener {self.wss_port} 127.0.0.1", "protocol websockets", *certs]
        return "\n".join(lines) + "\n"

    async def start(self) -> None:
        assert MOSQUITTO is not None
        os.chmod(self.directory, 0o777)  # mosquitto may run as its own user: it reads and persists here
        keep_ports = self.port != 0
        if self.with_tls and self.tls is None:
            self.tls = TLSMaterial.create(self.directory)
            os.chmod(self.tls.key_file, 0o644)
        for _ in range(5):
            if not keep_ports:
                self.port = free_port()
                self.ws_port = free_port() if self.websockets else None
                self.tls_port = free_port() if self.with_tls else None
                self.wss_port = free_port() if self.with_tls and self.websockets else None
            conf = self.directory / "mosquitto.conf"
            conf.write_text(self._config())
            self._log = self.directory / "mosquitto.log"
            log_fh = await asyncio.to_thread(open, self._log, "ab")
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    MOSQUITTO, "-c", str(conf), stdout=log_fh, stderr=log_fh, stdin=asyncio.subprocess.DEVNULL
                )
            finally:
                log_fh.close()
            try:
                ports = [p for p in (self.port, self.ws_port, self.tls_port, self.wss_port) if p]
                for port in ports:
                    await self._wait(port)
                return
            except (TimeoutError, RuntimeError):
                await self.stop()
                if keep_ports:
                    # The old process may still hold the port for a moment: try the same ports again.
                    continue
        raise RuntimeError(f"mosquitto did not start: {self._log and self._log.read_text()[-2000:]}")

    async def _wait(self, port: int) -> None:
        proc = self._proc
        assert proc is not None
        waiter = asyncio.ensure_future(wait_accepting(self.host, port, 10.0))
        exited = asyncio.ensure_future(proc.wait())
        try:
            done, _ = await asyncio.wait({waiter, exited}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (waiter, exited):
                if not t.done():
                    t.cancel()
            for t in (waiter, exited):
                with contextlib.suppress(BaseException):
                    await t
        if exited in done:
            raise RuntimeError("mosquitto exited (port taken?)")
        waiter.result()

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()


@dataclass
class AmqttBroker(Broker):
    """amqtt in this process: slower, but needs nothing installed beyond the test extra."""

    websockets: bool = False
    _broker: Any = None

    async def start(self) -> None:
        from amqtt.broker import Broker as _AmqttBroker

        logging.getLogger("amqtt").setLevel(logging.CRITICAL)
        keep = self.port != 0
        for _ in range(5):
            if not keep:
                self.port = free_port()
                self.ws_port = free_port() if self.websockets else None
            listeners: dict[str, Any] = {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}}
            if self.ws_port:
                listeners["ws"] = {"type": "ws", "bind": f"127.0.0.1:{self.ws_port}"}
            config = {
                "listeners": listeners,
                "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
            }
            broker = _AmqttBroker(config)
            try:
                await broker.start()
            except Exception:
                with contextlib.suppress(Exception):
                    await broker.shutdown()
                continue
            self._broker = broker
            await wait_accepting(self.host, self.port)
            return
        raise RuntimeError("amqtt did not start")

    async def stop(self) -> None:
        broker, self._broker = self._broker, None
        if broker is not None:
            with contextlib.suppress(Exception):
                await broker.shutdown()


@contextlib.asynccontextmanager
async def running_broker(
    *, websockets: bool = False, tls: bool = False, users: dict[str, str] | None = None, prefer: str = "auto",
    persistence: bool = False,
) -> AsyncIterator[Broker]:
    """A started broker (mosquitto when installed, else amqtt), stopped on exit."""
    broker: Broker
    if MOSQUITTO is not None and prefer in ("auto", "mosquitto"):
        broker = MosquittoBroker(
            kind="mosquitto", websockets=websockets, with_tls=tls, users=users, persistence=persistence
        )
    else:
        if tls or users is not None or persistence:
            raise RuntimeError("TLS, password and persistent brokers need mosquitto")
        broker = AmqttBroker(kind="amqtt", websockets=websockets)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()
        if isinstance(broker, MosquittoBroker):
            shutil.rmtree(broker.directory, ignore_errors=True)
