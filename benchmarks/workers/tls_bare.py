"""Case 5 yardstick: RSS per connection of bare ``ssl.SSLSocket``s (and bare TCP sockets), no MQTT library.

Opens ``--n`` sockets to the broker, each with a CONNECT answered by a CONNACK
(so TLS 1.3 session tickets are read too), through one shared verifying
``SSLContext`` when ``--tls-ca`` is given. Reports ``kib_per_conn``: this
process's RSS growth per connection, measured after one warm-up connection
(the CA store loaded). What OpenSSL keeps per connection shows here, with
nothing of ours around it.
"""

from __future__ import annotations

import argparse
import gc
import os
import socket
import ssl
from typing import Any

from benchmarks.workers._common import raise_fd_limit, run_and_emit


def _connect_packet(client_id: bytes) -> bytes:
    """MQTT 3.1.1 CONNECT, clean session, keepalive 60 s, no credentials."""
    variable = b"\x00\x04MQTT\x04\x02\x00\x3c"
    payload = len(client_id).to_bytes(2, "big") + client_id
    return bytes((0x10, len(variable) + len(payload))) + variable + payload


def _open(port: int, ctx: ssl.SSLContext | None, client_id: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    if ctx is not None:
        sock = ctx.wrap_socket(sock, server_hostname="127.0.0.1")
    sock.sendall(_connect_packet(client_id.encode()))
    if sock.recv(4)[:1] != b"\x20":
        raise RuntimeError("no CONNACK")
    return sock


def run(a: argparse.Namespace) -> dict[str, Any]:
    import psutil  # type: ignore[import-untyped,unused-ignore]

    ctx = ssl.create_default_context(cafile=a.tls_ca) if a.tls_ca else None
    prefix = f"bare{os.getpid()}x"
    keep = [_open(a.port, ctx, prefix + "warm")]
    gc.collect()
    base = psutil.Process().memory_info().rss
    keep += [_open(a.port, ctx, f"{prefix}{i}") for i in range(a.n)]
    gc.collect()
    after = psutil.Process().memory_info().rss
    version = keep[-1].version() if isinstance(keep[-1], ssl.SSLSocket) else "plain TCP"
    for sock in keep:
        sock.close()
    return {"kib_per_conn": (after - base) / a.n / 1024, "n": a.n, "tls_version": version,
            "openssl": ssl.OPENSSL_VERSION}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--tls-ca", help="TLS, trusting this CA file (PEM); plain TCP without it")
    a = ap.parse_args()
    raise_fd_limit(a.n + 100)
    run_and_emit(lambda: run(a))


if __name__ == "__main__":
    main()
