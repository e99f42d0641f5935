"""The hostile sockets of ``bench/hostile.py``, one behaviour per ``--mode``, each reopened when closed.

- ``drip``: a request head sent one byte every ``--drip`` seconds, never finished (README "Limits at
  the door": pending connections).
- ``idle``: ``GET /health`` once, read the answer, then stay idle on the kept-alive connection
  until the server closes it; ``--pause`` seconds later, again (docs/contract.md §16, issue 19).
- ``slowbody``: a sign-in form posted to ``/auth/login`` whose body comes one byte every ``--drip``
  seconds: before §16 each one held one of the admin app's 8 worker threads.

Every socket comes from one of ``--addresses`` loopback addresses (127.0.1.x, 127.0.2.x …), never
127.0.0.1, the key holder's and the admin's.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import socket
import time

from bench.stack import HOST

SOCKETS_PER_PROCESS = 10_000  # well inside a common hard limit of open files per process
HEAD = b"GET /api/tags HTTP/1.1\r\nHost: gateway\r\nX-Padding: " + b"a" * 64
HEALTH = b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n"
SLOW_BODY_LENGTH = 10_000
SLOW_BODY_HEAD = (
    b"POST /auth/login HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    b"Content-Length: %d\r\n\r\n" % SLOW_BODY_LENGTH
)
MODES = ("drip", "idle", "slowbody")


def raise_own_limit(wanted: int) -> int:
    """Raise this process's RLIMIT_NOFILE (the hard one too when allowed); children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, PermissionError):
            wanted = hard
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        return wanted
    return soft


def source_address(index: int, addresses: int) -> str:
    """The loopback address hostile socket ``index`` comes from (never 127.0.0.1, the key holder's)."""
    spot = index % addresses
    return f"127.0.{1 + spot // 250}.{1 + spot % 250}"


def _status(answer: bytes) -> str:
    return answer[9:12].decode(errors="replace") if answer.startswith(b"HTTP/") else "closed"


async def _trickle(sock: socket.socket, data: bytes, args: argparse.Namespace, deadline: float) -> str:
    """Send ``data`` a byte every ``--drip`` seconds; how it ended (a status, ``closed``, ``finished``)."""
    loop = asyncio.get_running_loop()
    for byte in data:
        if time.monotonic() >= deadline:
            break
        await loop.sock_sendall(sock, bytes([byte]))
        try:
            answer = await asyncio.wait_for(loop.sock_recv(sock, 256), args.drip)
        except TimeoutError:
            continue
        return _status(answer)
    return "finished"


async def _idle(sock: socket.socket, deadline: float) -> str:
    """Ask ``GET /health``, read the answer, stay idle until closed; how it ended."""
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, HEALTH)
    try:
        answer = await asyncio.wait_for(loop.sock_recv(sock, 4096), max(0.01, deadline - time.monotonic()))
    except TimeoutError:
        return "unanswered at the end"
    status = _status(answer)
    if status != "200":
        return status
    while time.monotonic() < deadline:
        try:
            more = await asyncio.wait_for(loop.sock_recv(sock, 4096), max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            return "idle at the end"
        if not more:
            return "closed while idle"
    return "idle at the end"


async def _one(index: int, args: argparse.Namespace, port: int, deadline: float, tally: dict) -> None:
    """One hostile socket: connect, behave as ``--mode`` says, reconnect when closed."""
    await asyncio.sleep(index * args.ramp / args.sockets)
    loop = asyncio.get_running_loop()
    while time.monotonic() < deadline:
        sock = None
        opened = False
        try:
            sock = socket.socket()
            sock.setblocking(False)
            sock.bind((source_address(index, args.addresses), 0))
            await loop.sock_connect(sock, (HOST, port))
            opened = True
            tally["connected"] += 1
            tally["open"] += 1
            tally["peak"] = max(tally["peak"], tally["open"])
            if args.mode == "idle":
                outcome = await _idle(sock, deadline)
            elif args.mode == "slowbody":
                await loop.sock_sendall(sock, SLOW_BODY_HEAD)
                outcome = await _trickle(sock, b"a" * SLOW_BODY_LENGTH, args, deadline)
            else:
                outcome = await _trickle(sock, HEAD, args, deadline)
            tally[outcome] = tally.get(outcome, 0) + 1
        except OSError as exc:
            tally["os errors"] = tally.get("os errors", 0) + 1
            tally["last os error"] = str(exc)
            await asyncio.sleep(0.5)
        finally:
            if opened:
                tally["open"] -= 1
            if sock is not None:
                sock.close()
        if args.mode == "idle" and time.monotonic() < deadline:
            await asyncio.sleep(args.pause)


def hostile_process(args: argparse.Namespace, indexes: range, port: int, deadline: float, report) -> None:
    """Some of the attackers, in their own process: apart from the key holder, and with their own fd table."""
    raise_own_limit(len(indexes) + 1024)
    tally: dict = {"connected": 0, "open": 0, "peak": 0}

    async def main() -> None:
        tasks = [asyncio.create_task(_one(i, args, port, deadline, tally)) for i in indexes]
        await asyncio.gather(*tasks)

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
    report.send(tally)
