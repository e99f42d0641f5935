"""kill -9 at random moments (docs/contract.md §10): no acknowledged admin write is lost, the database opens.

Each round starts the real gateway (``python asgi.py``) on one SQLite file, logs in with
``POST /auth/token`` and runs admin writes through the JSON API in a loop from two threads
(create an API key, add a whitelist entry, create a registration token); after a random
0.5-2.5 s it sends SIGKILL. Then ``PRAGMA integrity_check`` must say ``ok`` and every write
answered with a 2xx must be in the file. The next round restarts on the same file.

``--redis URL`` adds the scale-out check: two instances on one Redis, the first holds the
only slot with a long stream and is killed; the second must get the slot back within the
lease (≤ 30 s).

    .venv/bin/python bench/crash.py                 # 20 rounds
    .venv/bin/python bench/crash.py --rounds 3 --redis redis://127.0.0.1:6379/9
"""

from __future__ import annotations

import argparse
import random
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.procs import Service, free_port
from bench.stack import HOST, GatewaySetup, prepare_gateway, sim_config, start_gateway, start_simulator

TABLES = {"apikey": "api_keys", "whitelist": "whitelist_entries", "token": "registration_tokens"}
WRITERS = 2
LEASE_BOUND_S = 30.0  # docs/contract.md §10: a dead instance's slots come back within this


@dataclass
class Round:
    """What one kill -9 round wrote, what survived, and whether the file was sound."""

    acknowledged: dict[str, set[int]] = field(default_factory=lambda: {kind: set() for kind in TABLES})
    missing: dict[str, set[int]] = field(default_factory=dict)
    integrity: str = ""
    killed_after_s: float = 0.0

    @property
    def writes(self) -> int:
        """Writes answered with a 2xx before the kill."""
        return sum(len(ids) for ids in self.acknowledged.values())

    @property
    def ok(self) -> bool:
        """Nothing acknowledged is missing and the file passes its integrity check."""
        return self.integrity == "ok" and not any(self.missing.values())


def admin_headers(url: str, setup: GatewaySetup) -> dict[str, str]:
    """A Bearer token from ``POST /auth/token`` with the admin's password."""
    password = setup.env["SEADRAGON_ADMIN_PASSWORD"]
    answer = httpx.post(f"{url}/auth/token", json={"username": "admin", "password": password}, timeout=30)
    answer.raise_for_status()
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def _write_loop(url: str, headers: dict, writer: int, result: Round, stop: threading.Event) -> None:
    lock = threading.Lock()
    number = 0
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        while not stop.is_set():
            number += 1
            kind = ("apikey", "whitelist", "token")[number % 3]
            try:
                if kind == "apikey":
                    answer = client.post(
                        "/api/admin/apikeys", json={"name": f"w{writer}-{number}", "priority": 2}
                    )
                elif kind == "whitelist":
                    ip = f"10.{writer}.{(number // 250) % 250}.{number % 250 + 1}"
                    answer = client.post("/api/admin/whitelist", json={"ip": ip, "label": f"crash {number}"})
                else:
                    answer = client.post("/api/admin/tokens", json={})
            except httpx.TransportError:
                return  # the server is gone: whatever was not answered was not acknowledged
            if 200 <= answer.status_code < 300:
                with lock:
                    result.acknowledged[kind].add(answer.json()["id"])


def check_file(path: Path, result: Round) -> None:
    """Integrity check and presence of every acknowledged row, read straight from the file."""
    with sqlite3.connect(path) as conn:
        result.integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        for kind, table in TABLES.items():
            present = {row[0] for row in conn.execute(f"SELECT id FROM {table}")}  # noqa: S608 - fixed names
            result.missing[kind] = result.acknowledged[kind] - present


def crash_round(workdir: Path, setup: GatewaySetup, rng: random.Random) -> Round:
    """Start the gateway, write in a loop, kill -9 it at a random moment, check the file."""
    result = Round()
    gateway = start_gateway(workdir, setup)
    url = f"http://{HOST}:{setup.port}"
    headers = admin_headers(url, setup)
    stop = threading.Event()
    threads = [
        threading.Thread(target=_write_loop, args=(url, headers, n, result, stop), daemon=True)
        for n in range(WRITERS)
    ]
    for thread in threads:
        thread.start()
    result.killed_after_s = rng.uniform(0.5, 2.5)
    time.sleep(result.killed_after_s)
    assert gateway.process is not None
    gateway.process.send_signal(signal.SIGKILL)
    gateway.process.wait()
    stop.set()
    for thread in threads:
        thread.join(15)
    check_file(Path(setup.env["SEADRAGON_DATABASE_URL"].removeprefix("sqlite:///")), result)
    return result


def run_rounds(rounds: int, workdir: Path, seed: int | None = None) -> list[Round]:
    """``rounds`` kill -9 rounds on one database; every round's figures."""
    rng = random.Random(seed)
    simulator = start_simulator(workdir, sim_config())
    try:
        setup = prepare_gateway(workdir, f"http://{HOST}:{simulator.port}", 1, [2])
        results = []
        for _ in range(rounds):
            results.append(crash_round(workdir, setup, rng))
        # The file opens cleanly for the gateway after the last kill too.
        gateway = start_gateway(workdir, setup)
        gateway.stop()
        return results
    finally:
        simulator.stop()


def lease_recovery(workdir: Path, redis_url: str) -> float:
    """Seconds until a second instance gets the slot a kill -9ed first instance held."""
    simulator = start_simulator(workdir, sim_config(token_delay_ms=100))
    gateways: list[Service] = []
    try:
        first = prepare_gateway(workdir, f"http://{HOST}:{simulator.port}", 1, [2])
        first.env["SEADRAGON_REDIS_URL"] = redis_url
        second = GatewaySetup(
            env={**first.env}, port=free_port(), keys=first.keys, admin_token=first.admin_token
        )
        second.env["SEADRAGON_PORT"] = str(second.port)
        second.env["SEADRAGON_INSTANCE_DIR"] = str(workdir / f"gateway-{second.port}")
        gateways = [start_gateway(workdir, first), start_gateway(workdir, second)]
        key = {"X-API-Key": first.keys[2]}
        body = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}
        holder = httpx.Client(timeout=120)
        held = holder.stream(
            "POST",
            f"http://{HOST}:{first.port}/api/chat",
            json=body,
            headers={**key, "X-Sim-Tokens": "100000"},
        )
        response = held.__enter__()
        next(response.iter_lines())  # the first instance now holds the only slot
        assert gateways[0].process is not None
        gateways[0].process.send_signal(signal.SIGKILL)
        gateways[0].process.wait()
        killed = time.monotonic()
        answer = httpx.post(
            f"http://{HOST}:{second.port}/api/chat",
            json={**body, "stream": False},
            headers={**key, "X-Sim-Tokens": "2"},
            timeout=120,
        )
        recovered = time.monotonic() - killed
        if answer.status_code != 200:
            raise RuntimeError(f"the second instance answered {answer.status_code}: {answer.text}")
        holder.close()
        return recovered
    finally:
        for gateway in gateways:
            gateway.stop()
        simulator.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the rounds, print one line per round and a summary; exit 1 if anything was lost."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--redis", help="also check slot recovery through this Redis URL")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="seadragon-crash-") as tmp:
        workdir = Path(tmp)
        results = run_rounds(args.rounds, workdir, args.seed)
        print("| round | killed after s | writes acknowledged | missing | integrity_check |")
        print("|---|---|---|---|---|")
        for number, result in enumerate(results, 1):
            missing = sum(len(ids) for ids in result.missing.values())
            print(
                f"| {number} | {result.killed_after_s:.2f} | {result.writes} | {missing} "
                f"| {result.integrity} |"
            )
        total = sum(result.writes for result in results)
        lost = sum(not result.ok for result in results)
        print(f"\n{len(results)} rounds, {total} acknowledged writes verified, {lost} rounds with a loss")
        failed = lost > 0
        if args.redis:
            seconds = lease_recovery(workdir, args.redis)
            print(f"slot of the killed instance back after {seconds:.1f} s (bound {LEASE_BOUND_S:g} s)")
            failed = failed or seconds > LEASE_BOUND_S
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
