"""The embedded amqtt broker on 127.0.0.1, used when mosquitto is not installed."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

from amqtt.broker import Broker

from benchmarks.workers._common import wait_for_stop_signal


async def main(port: int) -> None:
    logging.getLogger("amqtt").setLevel(logging.ERROR)
    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}", "max_connections": 0}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
    )
    await broker.start()
    try:
        await wait_for_stop_signal()
    finally:
        await broker.shutdown()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(ap.parse_args().port))
