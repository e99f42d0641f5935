"""CPU per request of the upstream transports (LeanTransport vs httpx's httpcore transport).

A raw HTTP/1.1 server in a child process answers every request with a short chunked body shaped
like an Ollama stream (a few NDJSON lines); this process sends requests through ``httpx.AsyncClient``
on each transport and divides its own CPU time (user + system, ``time.process_time``) by the number
of requests, so the server's cost is not counted. Run: ``python -m bench.transport_cpu``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import time

import httpx

from proxy_app.transport import LeanTransport

LINE = b'{"model":"m","message":{"role":"assistant","content":"tok"},"done":false}\n'
BODY = b"".join(b"%x\r\n%b\r\n" % (len(LINE), LINE) for _ in range(8)) + b"0\r\n\r\n"
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
RESPONSE = HEAD + BODY


def _serve(sock: socket.socket) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                writer.write(RESPONSE)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, sock=sock)
        await server.serve_forever()

    asyncio.run(main())


async def _measure(transport: httpx.AsyncBaseTransport, url: str, concurrency: int, total: int) -> float:
    async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(10.0)) as client:

        async def worker(count: int) -> None:
            for _ in range(count):
                async with client.stream("POST", url, content=b'{"model":"m"}') as response:
                    async for _ in response.aiter_raw():
                        pass

        await asyncio.gather(*(worker(10) for _ in range(concurrency)))  # warm the pool
        started = time.process_time()
        await asyncio.gather(*(worker(total // concurrency) for _ in range(concurrency)))
        return (time.process_time() - started) / total * 1e6


def main() -> None:
    """Print µs of client CPU per request for each transport at c=1 and c=32."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3, help="best of N (the machine is shared)")
    args = parser.parse_args()
    sock = socket.create_server(("127.0.0.1", 0))
    server = multiprocessing.Process(target=_serve, args=(sock,), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/api/chat"
    makers = {
        "LeanTransport": lambda: LeanTransport(max_keepalive=64),
        "httpcore": lambda: httpx.AsyncHTTPTransport(limits=httpx.Limits(max_keepalive_connections=64)),
    }
    try:
        print("| transport | c=1 µs/req | c=32 µs/req |\n|---|---|---|")
        for name, make in makers.items():
            row = []
            for concurrency in (1, 32):
                best = min(
                    asyncio.run(_measure(make(), url, concurrency, args.requests)) for _ in range(args.rounds)
                )
                row.append(f"{best:.0f}")
            print(f"| {name} | {' | '.join(row)} |")
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
