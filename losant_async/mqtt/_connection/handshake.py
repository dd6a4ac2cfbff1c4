"""Opening one connection: paho's blocking connect in a thread, CONNACK awaited on the loop, refusals as typed errors."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from typing import Any

import aiomqtt
import anyio
import paho.mqtt.client as paho

from ...errors import (
    AuthenticationRefusedError,
    BrokerRefusedError,
    ConnectionLostError,
    TLSHandshakeError,
    TLSVerificationError,
)

__all__ = ["Handshake", "retrieve"]

# paho reports MQTT 3.1.1 CONNACK codes as v5 reason codes: 134 = 4 (bad user name or
# password), 135 = 5 (not authorised), 140 bad authentication method. A refusal of the credentials.
_AUTH_REFUSED = {4: 4, 5: 5, 134: 4, 135: 5, 140: 140}
# "Not now": 3 / 136 server unavailable, 137 server busy, 138 banned, 151 quota exceeded,
# 159 connection rate exceeded. Retried, but never at once (a ban grows with early retries).
_UNAVAILABLE = {3: 3, 136: 3, 137: 137, 138: 138, 151: 151, 159: 159}


class Handshake:
    """CONNECT..CONNACK of one aiomqtt client: aiomqtt's ``__aenter__`` taken apart.

    Takes over paho's ``on_connect`` and ``on_disconnect`` on construction (and
    calls aiomqtt's from them). ``closed()`` tells whether the connection was
    abandoned meanwhile; ``kill()`` closes whatever was opened, and is called on
    every way out of ``run`` but success.
    """

    __slots__ = ("_aiomqtt_on_connect", "_aiomqtt_on_disconnect", "_client", "_closed", "_host", "_kill", "_port",
                 "_timeout", "_tls", "connack")

    def __init__(
        self,
        client: aiomqtt.Client,
        *,
        host: str,
        port: int,
        tls: bool,
        timeout: float,
        closed: Callable[[], bool],
        kill: Callable[[], None],
    ) -> None:
        self._client = client
        self._host = host
        self._port = port
        self._tls = tls
        self._timeout = timeout
        self._closed = closed
        self._kill = kill
        #: The CONNACK's return code (or why none came).
        self.connack: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.connack.add_done_callback(retrieve)
        paho_client = client._client
        self._aiomqtt_on_connect: Any = paho_client.on_connect
        self._aiomqtt_on_disconnect: Any = paho_client.on_disconnect
        paho_client.on_connect = self._on_connect
        paho_client.on_disconnect = self._on_disconnect

    async def run(self) -> None:
        """CONNECT and wait for CONNACK; ``AuthenticationRefusedError`` or ``ConnectionLostError``.

        The socket is opened in an executor thread (paho's connect blocks), then
        CONNACK is awaited on the loop. Apart, a cancellation can wait for the
        thread alone, and a broker that closes the socket without a CONNACK ends
        the attempt at once instead of after the timeout.
        """
        thread = asyncio.get_running_loop().run_in_executor(None, self._connect_in_thread)
        try:
            await asyncio.shield(thread)
        except asyncio.CancelledError:
            # A cancelled connect closes what it opened, whatever the moment the cancellation
            # landed (the CONNECT may be out, or even accepted).
            # The thread cannot be interrupted: let it finish (paho bounds it by its own
            # socket timeout) so the socket it opens is closed here, not leaked.
            try:
                # Shielded from the owner's task group, which repeats its cancellation
                # until the task leaves: the wait is bounded by the timeout instead.
                with anyio.CancelScope(shield=True):
                    await asyncio.wait({thread}, timeout=self._timeout + 1)
            finally:
                if thread.done() and not thread.cancelled():
                    thread.exception()  # retrieved: the attempt is abandoned either way
                self._kill()
            raise
        except ssl.SSLCertVerificationError as exc:
            self._kill()
            # A wrong CA, host name or an expired certificate: not a fault that retrying heals.
            raise TLSVerificationError(
                f"the TLS certificate of {self._host}:{self._port} failed verification: {exc.verify_message or exc}"
            ) from None
        except (OSError, ValueError, paho.WebsocketConnectionError) as exc:
            self._kill()
            if self._tls and _in_tls_handshake(exc):
                raise TLSHandshakeError(
                    f"the TLS handshake with {self._host}:{self._port} failed ({exc or type(exc).__name__}): "
                    "the port may be plain MQTT over TCP; if so, pass transport=\"tcp\" (usually port 1883)"
                ) from None
            raise ConnectionLostError(f"could not connect: {exc}") from None
        except BaseException:
            self._kill()
            raise
        try:
            # asyncio.wait, not wait_for: on Python 3.10/3.11 wait_for can swallow a cancellation
            # that lands in the turn the CONNACK arrives, leaving a connection nobody closes.
            done, _ = await asyncio.wait({self.connack}, timeout=self._timeout)
        except BaseException:
            self._kill()
            raise
        if not done:
            self._kill()
            raise ConnectionLostError(f"no CONNACK within {self._timeout:g} s")
        error = self.connack.exception()
        if error is not None:
            self._kill()
            raise error
        rc = self.connack.result()
        if rc == 0:
            return
        self._kill()
        if rc in _AUTH_REFUSED:
            raise AuthenticationRefusedError(
                f"the broker refused the credentials (CONNACK return code {_AUTH_REFUSED[rc]})",
                return_code=_AUTH_REFUSED[rc],
            )
        if rc in _UNAVAILABLE:
            raise BrokerRefusedError(
                f"the broker refused the connection for now (CONNACK return code {_UNAVAILABLE[rc]})",
                return_code=_UNAVAILABLE[rc],
            )
        raise ConnectionLostError(f"the broker refused the connection (CONNACK {rc})")

    def _connect_in_thread(self) -> None:
        # Abandoned (a cancelled connect killed this connection) before the executor got to it:
        # do not connect at all; a queue of cancelled starts then drains at once.
        if self._closed():
            return
        self._client._client_connect()
        if self._closed():
            # Abandoned while connecting, and the waiter may be gone: close what was opened here.
            with contextlib.suppress(Exception):
                self._client._client._reset_sockets()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        rc = int(getattr(reason, "value", reason))
        if not self.connack.done():
            self.connack.set_result(rc)
        self._aiomqtt_on_connect(client, userdata, flags, reason, properties)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        if not self.connack.done():
            # Closed before any CONNACK: aiomqtt would wait for its timeout.
            self.connack.set_exception(ConnectionLostError(f"the broker closed the connection before CONNACK ({reason})"))
            self.connack.exception()
        self._aiomqtt_on_disconnect(client, userdata, flags, reason, properties)


def retrieve(fut: asyncio.Future[Any]) -> None:
    """A done callback: whatever ended ``fut`` is reported elsewhere, so asyncio must not log it as never retrieved."""
    if not fut.cancelled():
        fut.exception()


def _in_tls_handshake(exc: BaseException) -> bool:
    """Whether ``exc`` came out of a TLS handshake (an SSL error, or a timeout while waiting for its answer)."""
    if isinstance(exc, ssl.SSLError):
        return True
    # asyncio turns a TimeoutError from the executor into a new one, without the traceback:
    # OpenSSL's words are what is left ("_ssl.c: The handshake operation timed out").
    if isinstance(exc, TimeoutError) and "handshake" in str(exc):
        return True
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "do_handshake":
            return True
        tb = tb.tb_next
    return False
