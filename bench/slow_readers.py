"""Slow readers of fast streams (docs/contract.md §10): each holds a bounded buffer in the gateway.

``--readers`` clients (default 100) each ask the real gateway for a long stream the simulator
sends as fast as it can, then read it slowly (4 KiB every 100 ms, with a small socket receive
buffer). The gateway must pass the back-pressure on to Ollama rather than buffer the streams:
its RSS growth over the idle baseline, divided by the readers, must stay under 1 MiB each.

    .venv/bin/python bench/slow_readers.py
    .venv/bin/python bench/slow_readers.py --readers 20 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.procs import rss_mib
from bench.stack import HOST, gateway_on_simulator

PER_READER_BOUND_MIB = 1.0
TOKENS = 50_000  # about 6.5 MiB of NDJSON per stream: more than the kernel buffers on both sides
READ_BYTES = 4096
READ_PAUSE_S = 0.1


async def slow_reader(port: int, key: str, stop: asyncio.Event, started: list[int]) -> None:
    """Ask for a long stream and read it slowly until told to stop."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (HOST, port))
    reader, writer = await asyncio.open_connection(sock=sock)
    body = json.dumps({"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}).encode()
    writer.write(
        (
            f"POST /api/chat HTTP/1.1\r\nHost: {HOST}:{port}\r\nX-API-Key: {key}\r\n"
            f"X-Sim-Tokens: {TOKENS}\r\nX-Sim-Delay: 0\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
    )
    await writer.drain()
    first = True
    while not stop.is_set():
        chunk = await reader.read(READ_BYTES)
        if not chunk:
            break
        if first:
            started.append(1)
            first = False
        await asyncio.sleep(READ_PAUSE_S)
    writer.close()


def measure(workdir: Path, readers: int, seconds: float) -> tuple[float, float, int]:
    """Idle and peak gateway RSS (MiB) while ``readers`` slow readers hold streams; how many started."""
    with gateway_on_simulator(workdir, readers, (2,)) as (setup, gateway):
        baseline = rss_mib(gateway.pid)
        peak = baseline
        started: list[int] = []

        async def run() -> None:
            nonlocal peak
            stop = asyncio.Event()
            key = setup.keys[2]
            tasks = [
                asyncio.ensure_future(slow_reader(setup.port, key, stop, started)) for _ in range(readers)
            ]
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                peak = max(peak, rss_mib(gateway.pid))
                await asyncio.sleep(0.2)
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run(run())
        return baseline, peak, len(started)


def main(argv: list[str] | None = None) -> int:
    """Measure and print; exit 1 if a reader cost the gateway 1 MiB or more."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--readers", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="seadragon-slow-readers-") as tmp:
        baseline, peak, started = measure(Path(tmp), args.readers, args.seconds)
    per_reader = (peak - baseline) / max(args.readers, 1)
    print(f"{started}/{args.readers} slow readers streaming for {args.seconds:g} s")
    print(f"gateway RSS: idle {baseline:.1f} MiB, peak {peak:.1f} MiB, {per_reader:.2f} MiB per reader")
    print(f"bound: {PER_READER_BOUND_MIB:g} MiB per reader")
    return 0 if per_reader < PER_READER_BOUND_MIB and started == args.readers else 1


if __name__ == "__main__":
    sys.exit(main())
