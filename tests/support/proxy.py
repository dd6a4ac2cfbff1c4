"""A TCP proxy on 127.0.0.1 that can cut every connection on demand (fault injection)."""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["CuttableProxy"]


class CuttableProxy:
    """``async with CuttableProxy(target_port) as proxy:`` then connect to ``proxy.port``.

    ``cut()`` closes every live connection at once (both sides see a reset or EOF);
    new connections are accepted again afterwards. ``connections`` counts accepted
    connections, ``accepted`` is an event set on each new one.
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._accepted = asyncio.Event()

    async def __aenter__(self) -> CuttableProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def wait_connections(self, n: int, timeout: float = 10.0) -> None:
        """Return once ``n`` connections were accepted in total."""

        async def _wait() -> None:
            while self.connections < n:
                self._accepted.clear()
                await self._accepted.wait()

        await asyncio.wait_for(_wait(), timeout)

    def cut(self) -> None:
        """Abort every live connection."""
        for client_w, upstream_w in list(self._pairs):
            for w in (client_w, upstream_w):
                transport = w.transport
                with contextlib.suppress(Exception):
                    transport.abort()
        self._pairs.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        self.connections += 1
        self._accepted.set()
        t1 = asyncio.ensure_future(self._pipe(reader, up_writer))
        t2 = asyncio.ensure_future(self._pipe(up_reader, writer))
        for t in (t1, t2):
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)
        await asyncio.wait({t1, t2}, return_when=asyncio.FIRST_COMPLETED)
        for w in pair:
            with contextlib.suppress(Exception):
                w.transport.abort()
        self._pairs.discard(pair)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
