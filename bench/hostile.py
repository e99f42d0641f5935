"""A key holder's latency while 20,000 hostile sockets press on the door.

    .venv/bin/python -m bench.hostile                      # 20,000 sockets, 60 s
    .venv/bin/python -m bench.hostile --sockets 2000 --seconds 20

Starts the simulator and the real gateway (``python asgi.py``, its default
door limits unless ``--env NAME=VALUE`` changes them), then, from a separate
process, opens ``--sockets`` connections to it from ``--addresses`` loopback
addresses (127.0.1.x, 127.0.2.x …) that each send a request line one byte
every ``--drip`` seconds and never finish it; a refused or closed socket is
opened again. Meanwhile a key holder asks for ``/api/tags`` and a small
``/api/chat`` twice a second, on a kept-alive connection and on a fresh one.
Everything is on 127.0.0.1; the run stops by itself after ``--seconds``.
Exit status 0 when every key-holder request succeeded within ``--budget``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.procs import cpu_seconds, rss_mib
from bench.stack import HOST, prepare_gateway, sim_config, start_gateway, start_simulator

SOCKETS_PER_PROCESS = 10_000  # well inside a common hard limit of open files per process
HEAD = b"GET /api/tags HTTP/1.1\r\nHost: gateway\r\nX-Padding: " + b"a" * 64
CHAT = {
    "model": "llama3.2:latest",
    "messages": [{"role": "user", "content": "hi"}],
    "stream": False,
    "options": {"num_predict": 8},
}


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


async def _drip(index: int, args: argparse.Namespace, port: int, deadline: float, tally: dict) -> None:
    """One hostile socket: connect, drip the head, reconnect when closed."""
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
            outcome = "finished"
            for byte in HEAD:
                if time.monotonic() >= deadline:
                    break
                await loop.sock_sendall(sock, bytes([byte]))
                try:
                    answer = await asyncio.wait_for(loop.sock_recv(sock, 256), args.drip)
                except TimeoutError:
                    continue
                outcome = answer[9:12].decode(errors="replace") if answer.startswith(b"HTTP/") else "closed"
                break
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


def hostile_process(args: argparse.Namespace, indexes: range, port: int, deadline: float, report) -> None:
    """Some of the attackers, in their own process: apart from the key holder, and with their own fd table."""
    raise_own_limit(len(indexes) + 1024)
    tally: dict = {"connected": 0, "open": 0, "peak": 0}

    async def main() -> None:
        tasks = [asyncio.create_task(_drip(i, args, port, deadline, tally)) for i in indexes]
        await asyncio.gather(*tasks)

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
    report.send(tally)


def _timed(call) -> float | str:
    """Seconds one request took, or why it failed."""
    started = time.monotonic()
    try:
        response = call()
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return time.monotonic() - started if response.status_code == 200 else str(response.status_code)


def key_holder(url: str, key: str, deadline: float) -> dict[str, list[float | str]]:
    """Latencies (s) of the key holder's requests, kept-alive and on fresh connections; failures as text."""
    results: dict[str, list[float | str]] = {
        name: [] for name in ("tags", "chat", "tags fresh", "chat fresh")
    }
    headers = {"X-API-Key": key}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as pooled:
        while time.monotonic() < deadline:
            results["tags"].append(_timed(lambda: pooled.get("/api/tags")))
            results["chat"].append(_timed(lambda: pooled.post("/api/chat", json=CHAT)))
            with httpx.Client(base_url=url, headers=headers, timeout=30) as fresh:
                results["tags fresh"].append(_timed(lambda: fresh.get("/api/tags")))
            with httpx.Client(base_url=url, headers=headers, timeout=30) as fresh:
                results["chat fresh"].append(_timed(lambda: fresh.post("/api/chat", json=CHAT)))
            time.sleep(0.5)
    return results


def open_descriptors(pid: int) -> int:
    """How many file descriptors ``pid`` holds."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def summary(name: str, values: list[float | str], budget: float) -> tuple[str, bool]:
    """One line per request kind: count, p50, p99, max, failures."""
    times = sorted(v for v in values if isinstance(v, float))
    failures = [v for v in values if not isinstance(v, float)]
    if not times:
        return f"| {name} | {len(values)} | - | - | - | {len(failures)} {sorted(set(failures))} |", False
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    line = (
        f"| {name} | {len(values)} | {statistics.median(times) * 1000:.0f} ms | {p99 * 1000:.0f} ms "
        f"| {times[-1] * 1000:.0f} ms | {len(failures)} {sorted(set(failures)) if failures else ''} |"
    )
    return line, not failures and times[-1] <= budget


def main(argv: list[str] | None = None) -> int:
    """Run the measurement and print its table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sockets", type=int, default=20_000)
    parser.add_argument(
        "--addresses", type=int, default=500, help="loopback source addresses (at most 62,500)"
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--ramp", type=float, default=10.0, help="seconds over which the sockets open")
    parser.add_argument("--drip", type=float, default=5.0, help="seconds between two bytes of a hostile head")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds a key-holder request may take")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the gateway")
    args = parser.parse_args(argv)
    if not 1 <= args.addresses <= 62_500 or args.sockets < 1 or args.seconds <= 0:
        parser.error("--addresses must be 1–62,500; --sockets and --seconds positive")
    limit = raise_own_limit(2 * args.sockets + 4096)
    workdir = Path(tempfile.mkdtemp(prefix="seadragon-hostile-"))
    simulator = start_simulator(workdir, sim_config())
    gateway = None
    try:
        setup = prepare_gateway(workdir, f"http://{HOST}:{simulator.port}", 8, [5])
        for item in args.env:
            name, _, value = item.partition("=")
            setup.env[name if name.startswith("SEADRAGON_") else f"SEADRAGON_{name}"] = value
        gateway = start_gateway(workdir, setup)
        url = f"http://{HOST}:{setup.port}"
        cpu_before = cpu_seconds(gateway.pid)
        deadline = time.monotonic() + args.seconds
        pipes, attackers = [], []
        for first in range(0, args.sockets, SOCKETS_PER_PROCESS):
            receiver, sender = multiprocessing.Pipe(duplex=False)
            indexes = range(first, min(first + SOCKETS_PER_PROCESS, args.sockets))
            attacker = multiprocessing.Process(
                target=hostile_process, args=(args, indexes, setup.port, deadline, sender)
            )
            attacker.start()
            pipes.append(receiver)
            attackers.append(attacker)
        peak_fds, peak_rss = 0, 0.0
        results: dict[str, list[float | str]] = {}

        def watch() -> None:
            nonlocal peak_fds, peak_rss
            while time.monotonic() < deadline:
                peak_fds = max(peak_fds, open_descriptors(gateway.pid))
                peak_rss = max(peak_rss, rss_mib(gateway.pid))
                time.sleep(0.5)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        results = key_holder(url, setup.keys[5], deadline)
        watcher.join()
        cpu_used = cpu_seconds(gateway.pid) - cpu_before
        load = os.getloadavg()[0]
        tally: dict = {}
        for receiver, attacker in zip(pipes, attackers, strict=True):
            part = receiver.recv() if receiver.poll(args.drip + 30) else {"lost": 1}
            for name, value in part.items():
                if isinstance(value, int):
                    tally[name] = tally.get(name, 0) + value
            attacker.join(30)
            if attacker.is_alive():
                attacker.terminate()
    finally:
        if gateway is not None:
            gateway.stop()
        simulator.stop()
    print(
        f"hostile sockets: {args.sockets} from {args.addresses} addresses "
        f"for {args.seconds:g} s (fd limit {limit})"
    )
    print(
        f"gateway: peak {peak_fds} file descriptors, peak RSS {peak_rss:.0f} MiB; its log: {gateway.log_path}"
    )
    print(
        f"gateway CPU: {cpu_used:.1f} s in {args.seconds:g} s "
        f"({100 * cpu_used / args.seconds:.0f} % of a core); "
        f"machine load average {load:.1f} on {os.cpu_count()} CPUs"
    )
    print("attackers: " + ", ".join(f"{k} {v}" for k, v in tally.items()))
    print("\n| key holder | requests | p50 | p99 | max | failures |\n|---|---|---|---|---|---|")
    ok = True
    for name, values in results.items():
        line, good = summary(name, values, args.budget)
        ok = ok and good
        print(line)
    print(f"\nevery key-holder request within {args.budget:g} s: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
