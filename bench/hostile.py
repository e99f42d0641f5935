"""A key holder's and an admin's latency while thousands of hostile sockets press on the door.

    .venv/bin/python -m bench.hostile                      # 20,000 dripping heads, 60 s
    .venv/bin/python -m bench.hostile --sockets 2000 --seconds 20
    .venv/bin/python -m bench.hostile --mode idle --sockets 10000 --addresses 1
    .venv/bin/python -m bench.hostile --mode slowbody --sockets 200 --env BODY_TIMEOUT=10

Starts the simulator and the real gateway (``python asgi.py``, its default
door limits unless ``--env NAME=VALUE`` changes them), then, from separate
processes, opens ``--sockets`` connections to it from ``--addresses`` loopback
addresses that behave as ``--mode`` says (``bench/hostile_attacks.py``: dripping
heads, idle kept-alive connections, or slow bodies into sign-in); a refused or
closed socket is opened again. Meanwhile a key holder asks for ``/api/tags`` and
a small ``/api/chat`` twice a second, on a kept-alive connection and on a fresh
one, and an admin signs in (``POST /auth/token``) and lists the API keys
(``GET /api/admin/apikeys``), each on a fresh connection. Everything is on
127.0.0.1; the run stops by itself after ``--seconds``. Exit status 0 when every
key-holder and admin request succeeded within ``--budget``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.hostile_attacks import MODES, SOCKETS_PER_PROCESS, hostile_process, raise_own_limit
from bench.procs import cpu_seconds, rss_mib
from bench.stack import HOST, prepare_gateway, sim_config, start_gateway, start_simulator

CHAT = {
    "model": "llama3.2:latest",
    "messages": [{"role": "user", "content": "hi"}],
    "stream": False,
    "options": {"num_predict": 8},
}


def _timed(call) -> float | str:
    """Seconds one request took, or why it failed."""
    started = time.monotonic()
    try:
        response = call()
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return time.monotonic() - started if response.status_code == 200 else str(response.status_code)


def key_holder(
    url: str, key: str, admin: tuple[str, str, str], deadline: float
) -> dict[str, list[float | str]]:
    """Latencies (s) of the key holder's and the admin's requests; failures as text.

    ``admin`` is (username, password, access token).
    """
    names = ("tags", "chat", "tags fresh", "chat fresh", "admin sign-in fresh", "admin API fresh")
    results: dict[str, list[float | str]] = {name: [] for name in names}
    headers = {"X-API-Key": key}
    username, password, token = admin
    sign_in = {"username": username, "password": password}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as pooled:
        while time.monotonic() < deadline:
            results["tags"].append(_timed(lambda: pooled.get("/api/tags")))
            results["chat"].append(_timed(lambda: pooled.post("/api/chat", json=CHAT)))
            with httpx.Client(base_url=url, headers=headers, timeout=30) as fresh:
                results["tags fresh"].append(_timed(lambda: fresh.get("/api/tags")))
            with httpx.Client(base_url=url, headers=headers, timeout=30) as fresh:
                results["chat fresh"].append(_timed(lambda: fresh.post("/api/chat", json=CHAT)))
            with httpx.Client(base_url=url, timeout=30) as fresh:
                results["admin sign-in fresh"].append(_timed(lambda: fresh.post("/auth/token", json=sign_in)))
            with httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
            ) as fresh:
                results["admin API fresh"].append(_timed(lambda: fresh.get("/api/admin/apikeys")))
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
    parser.add_argument("--mode", choices=MODES, default="drip", help="what each hostile socket does")
    parser.add_argument("--sockets", type=int, default=20_000)
    parser.add_argument(
        "--addresses", type=int, default=500, help="loopback source addresses (at most 62,500)"
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--ramp", type=float, default=10.0, help="seconds over which the sockets open")
    parser.add_argument("--drip", type=float, default=5.0, help="seconds between two bytes of a hostile head")
    parser.add_argument(
        "--pause", type=float, default=1.0, help="idle mode: seconds before a closed socket comes back"
    )
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
        admin = (
            setup.env.get("SEADRAGON_ADMIN_USER", "admin"),
            setup.env["SEADRAGON_ADMIN_PASSWORD"],
            setup.admin_token,
        )
        load_at_start = os.getloadavg()[0]
        results = key_holder(url, setup.keys[5], admin, deadline)
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
        f"hostile sockets ({args.mode}): {args.sockets} from {args.addresses} addresses "
        f"for {args.seconds:g} s (fd limit {limit})"
    )
    print(
        f"gateway: peak {peak_fds} file descriptors, peak RSS {peak_rss:.0f} MiB; its log: {gateway.log_path}"
    )
    print(
        f"gateway CPU: {cpu_used:.1f} s in {args.seconds:g} s "
        f"({100 * cpu_used / args.seconds:.0f} % of a core); "
        f"machine load average {load_at_start:.1f} at the start, {load:.1f} at the end, "
        f"on {os.cpu_count()} CPUs"
    )
    print("attackers: " + ", ".join(f"{k} {v}" for k, v in tally.items()))
    print("\n| request | count | p50 | p99 | max | failures |\n|---|---|---|---|---|---|")
    ok = True
    for name, values in results.items():
        line, good = summary(name, values, args.budget)
        ok = ok and good
        print(line)
    print(f"\nevery key-holder and admin request within {args.budget:g} s: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
