"""What the door's limits cost per request: uvicorn's httptools protocol with and without them.

    .venv/bin/python -m bench.door_overhead               # 20,000 requests per round, 7 rounds

Both protocols serve the same trivial ASGI app on one kept-alive connection
with an in-memory transport, inside one event loop: what differs is only the
protocol class. Rounds alternate between the two and the median CPU time per
request of each is printed, so a loaded machine shifts both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

import uvloop
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from common.door import DoorLimits, door_protocol

REQUEST = b"GET /api/tags HTTP/1.1\r\nHost: gateway\r\nX-API-Key: sdk_0123456789abcdef\r\nAccept: */*\r\n\r\n"


async def app(scope, receive, send) -> None:
    """The smallest complete response."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"{}"})


class MemoryTransport(asyncio.Transport):
    """Accepts writes and forgets them; reports a loopback peer."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = False

    def get_extra_info(self, name: str, default=None):
        """Peer and socket names as a TCP transport gives them."""
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def write(self, data) -> None:
        """Drop the bytes."""

    def is_closing(self) -> bool:
        """Whether close() was called."""
        return self.closing

    def close(self) -> None:
        """Mark closed."""
        self.closing = True

    def pause_reading(self) -> None:
        """No-op."""

    def resume_reading(self) -> None:
        """No-op."""


async def serve(protocol_class: type, config: Config, requests: int) -> float:
    """CPU seconds per request for ``requests`` requests on one connection."""
    state = ServerState()
    protocol = protocol_class(config=config, server_state=state, app_state={})
    protocol.connection_made(MemoryTransport())
    started = time.process_time()
    for _ in range(requests):
        protocol.data_received(REQUEST)
        while state.tasks:
            await asyncio.sleep(0)
    elapsed = time.process_time() - started
    protocol.connection_lost(None)
    return elapsed / requests


def main(argv: list[str] | None = None) -> int:
    """Alternate rounds and print the medians."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    config = Config(app, lifespan="off", log_level="warning", timeout_keep_alive=120)
    config.load()
    door = door_protocol(DoorLimits(10.0, 64 * 1024, 8192, 64, body_timeout=60.0))
    timings: dict[str, list[float]] = {"uvicorn httptools": [], "door": []}

    async def rounds() -> None:
        for _ in range(args.rounds):
            timings["uvicorn httptools"].append(await serve(HttpToolsProtocol, config, args.requests))
            timings["door"].append(await serve(door, config, args.requests))

    uvloop.run(rounds())
    plain = statistics.median(timings["uvicorn httptools"])
    limited = statistics.median(timings["door"])
    print(f"uvicorn httptools: {plain * 1e6:.2f} µs/request (median of {args.rounds} rounds)")
    print(f"with the door:     {limited * 1e6:.2f} µs/request ({(limited - plain) * 1e6:+.2f} µs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
