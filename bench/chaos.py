"""Chaos (docs/contract.md §10): client departures and upstream faults leave nothing behind.

Runs N requests (default 10,000) through the real gateway in front of the bundled simulator,
on 2 slots, from several API keys of different priorities, with ``--concurrency`` at once.
30 % of the clients leave at a random stage (while queued, before the first byte, mid-stream);
5 % of the upstream answers fail (``X-Sim-Fault``: ``status=500``, ``drop_headers``,
``drop_mid``). Afterwards: no slot held and nothing queued (``/api/admin/stats``), no upstream
connection open (``/metrics``), and after a clean stop exactly one request-log row per request
with the right status (matched by ``X-Request-ID``; clients that left before any header are
counted among the 499 rows, every 499 row has its stage).

    .venv/bin/python bench/chaos.py                  # 10,000 requests
    .venv/bin/python bench/chaos.py --requests 1000  # what the tests run
    .venv/bin/python bench/chaos.py --redis redis://127.0.0.1:6379/11   # two instances, one kill -9ed
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.procs import Service, free_port
from bench.stack import HOST, GatewaySetup, prepare_gateway, sim_config, start_gateway, start_simulator

PRIORITIES = (1, 2, 3, 5)  # one API key each: several identities
LEAVE_SHARE = 0.30
FAULT_SHARE = 0.05
FAULTS = ("status=500", "drop_headers", "drop_mid,after=2")
LEAVE_STAGES = ("queued", "before_first_byte", "mid_stream")
CLIENT_LEFT = 499
SETTLE_S = 10.0  # seconds the gateway may take to show an empty queue after the last client
LEASE_S = 15.0  # a killed instance's slots are freed when their Redis lease runs out


@dataclass
class Outcome:
    """One request as the client saw it and what its row must say."""

    plan: str  # "ok", a fault, or a leave stage
    request_id: str | None = None  # from X-Request-ID, when the headers arrived
    expected: int | None = None  # the row's status
    # A client that left without reading may have left after the gateway sent everything: then 200.
    may_have_finished: bool = False
    instance: int = 0  # which gateway it went to (with --redis, 0 is the one killed mid-run)


@dataclass
class Report:
    """What the run found."""

    outcomes: list[Outcome] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    rows: int = 0
    seconds: float = 0.0
    statuses: Counter = field(default_factory=Counter)
    killed_rows: int = 0


def _plan(rng: random.Random) -> str:
    roll = rng.random()
    if roll < LEAVE_SHARE:
        return rng.choice(LEAVE_STAGES)
    if roll < LEAVE_SHARE + FAULT_SHARE:
        return rng.choice(FAULTS)
    return "ok"


async def one_request(client: httpx.AsyncClient, key: str, plan: str, rng: random.Random) -> Outcome:
    """Send one chat request and behave as ``plan`` says."""
    outcome = Outcome(plan)
    stream = plan in ("mid_stream", "drop_mid,after=2") or rng.random() < 0.7
    headers = {"X-API-Key": key, "X-Sim-Tokens": "4", "X-Sim-Delay": "0.002"}
    if plan in FAULTS:
        headers["X-Sim-Fault"] = plan
    if plan == "before_first_byte":
        headers["X-Sim-First-Token-Delay"] = "0.5"
    if plan == "mid_stream":  # long enough that the client really leaves before the end
        headers.update({"X-Sim-Tokens": "200", "X-Sim-Delay": "0.01"})
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    if plan in ("queued", "before_first_byte"):
        # Send the whole request on a connection of its own, then leave before any answer.
        return await _leave_early(client, body, headers, plan, rng)
    async with client.stream("POST", "/api/chat", json=body, headers=headers) as answer:
        outcome.request_id = answer.headers.get("X-Request-ID")
        if plan == "mid_stream":
            async for _ in answer.aiter_lines():
                break  # one line, then gone
            outcome.expected = CLIENT_LEFT
            return outcome
        text = (await answer.aread()).decode(errors="replace")
    broke = answer.status_code == 200 and stream and '"done":true' not in text.replace(" ", "")
    outcome.expected = 502 if broke else answer.status_code
    return outcome


async def _leave_early(client: httpx.AsyncClient, body: dict, headers: dict, plan: str, rng) -> Outcome:
    outcome = Outcome(plan, expected=CLIENT_LEFT, may_have_finished=True)
    url = client.base_url
    content = json.dumps(body).encode()
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = (
        f"POST /api/chat HTTP/1.1\r\nHost: {url.host}:{url.port}\r\nContent-Type: application/json\r\n"
        f"{head}Content-Length: {len(content)}\r\n\r\n"
    ).encode() + content
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(request)
        await writer.drain()
        wait = rng.uniform(0.0, 0.05) if plan == "queued" else 0.25
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), wait)
    except TimeoutError:
        answer = b""
    except asyncio.IncompleteReadError:
        raise ConnectionResetError("the gateway closed the connection without an answer") from None
    finally:
        writer.close()
    if answer:  # headers came first: the client knows its request id and still leaves
        for line in answer.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "x-request-id":
                outcome.request_id = value.strip()
        status = int(answer.split(b" ", 2)[1])
        outcome.expected = CLIENT_LEFT if status == 200 else status
    return outcome


async def drive(
    urls: list[str], keys: list[str], requests: int, concurrency: int, seed: int, kill: Callable | None = None
) -> list[Outcome]:
    """Every request, ``concurrency`` at a time, spread over ``urls``; ``kill()`` once half are done."""
    rng = random.Random(seed)
    plans = [_plan(rng) for _ in range(requests)]
    outcomes: list[Outcome] = []
    queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
    for number, plan in enumerate(plans):
        queue.put_nowait((number, plan))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(clients: list[httpx.AsyncClient]) -> None:
        nonlocal kill
        while not queue.empty():
            number, plan = queue.get_nowait()
            instance = number % len(clients)
            try:
                outcome = await one_request(clients[instance], keys[number % len(keys)], plan, rng)
            except (httpx.TransportError, OSError) as exc:
                outcome = Outcome(plan, expected=None, request_id=f"transport error: {exc!r}")
            outcome.instance = instance
            outcomes.append(outcome)
            if kill is not None and len(outcomes) >= requests // 2:
                kill, killing = None, kill
                killing()

    clients = [httpx.AsyncClient(base_url=url, timeout=60, limits=limits) for url in urls]
    try:
        await asyncio.gather(*(worker(clients) for _ in range(concurrency)))
    finally:
        for client in clients:
            await client.aclose()
    return outcomes


def gateway_numbers(url: str, admin: dict[str, str]) -> tuple[dict, float]:
    """``/api/admin/stats`` and the open upstream connections from ``/metrics``."""
    stats = httpx.get(f"{url}/api/admin/stats", headers=admin, timeout=10).json()
    metrics = httpx.get(f"{url}/metrics", headers=admin, timeout=10).text
    line = next(
        line for line in metrics.splitlines() if line.startswith("seadragon_upstream_open_connections")
    )
    return stats, float(line.split()[-1])


def check_rows(path: Path, outcomes: list[Outcome], report: Report) -> None:
    """Exactly one row per request, with the right status."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT request_id, status, stage FROM request_log WHERE endpoint = '/api/chat'"
        ).fetchall()
    report.rows = len(rows)
    report.statuses = Counter(status for _, status, _ in rows)
    by_id: dict[str, list[tuple[int, str | None]]] = {}
    for request_id, status, stage in rows:
        by_id.setdefault(request_id, []).append((status, stage))
    if len(rows) != len(outcomes):
        report.problems.append(f"{len(rows)} rows for {len(outcomes)} requests")
    for request_id, found in by_id.items():
        if len(found) > 1:
            report.problems.append(f"{request_id}: {len(found)} rows")
    unmatched = dict(by_id)
    for outcome in outcomes:
        if outcome.request_id is None:
            continue
        found = unmatched.pop(outcome.request_id, None)
        if found is None:
            report.problems.append(f"{outcome.plan} {outcome.request_id}: no row")
        elif found[0][0] != outcome.expected and not (outcome.may_have_finished and found[0][0] == 200):
            report.problems.append(
                f"{outcome.plan} {outcome.request_id}: row {found[0]}, expected {outcome.expected}"
            )
    anonymous = sum(outcome.request_id is None for outcome in outcomes)
    left = [found[0] for found in unmatched.values()]
    wrong = [
        row for row in left if row[0] not in (CLIENT_LEFT, 200) or (row[0] == CLIENT_LEFT and row[1] is None)
    ]
    if len(left) != anonymous or wrong:
        report.problems.append(f"{anonymous} clients left before any header; unmatched rows {Counter(left)}")
    for status, stage in (found[0] for found in by_id.values()):
        if status == CLIENT_LEFT and stage is None:
            report.problems.append("a 499 row without its stage")
            break


def _settle(url: str, admin: dict[str, str], within: float, report: Report) -> None:
    """Wait until nothing is queued, held or open upstream; a problem if that takes over ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        stats, open_upstream = gateway_numbers(url, admin)
        if stats["queue_length"] == 0 and stats["active_requests"] == 0 and open_upstream == 0:
            return
        if time.monotonic() > deadline:
            report.problems.append(
                f"left behind: queue {stats['queue_length']}, active {stats['active_requests']}, "
                f"upstream connections {open_upstream}"
            )
            return
        time.sleep(0.2)


def _db(setup: GatewaySetup) -> Path:
    return Path(setup.env["SEADRAGON_DATABASE_URL"].removeprefix("sqlite:///"))


def _twin(workdir: Path, setup: GatewaySetup) -> GatewaySetup:
    """A second instance with a copy of the first's database (same keys), its own port and request log."""
    port = free_port()
    instance = workdir / f"gateway-{port}"
    instance.mkdir(parents=True)
    shutil.copy(_db(setup), instance / "seadragon.db")
    env = {
        **setup.env,
        "SEADRAGON_PORT": str(port),
        "SEADRAGON_INSTANCE_DIR": str(instance),
        "SEADRAGON_DATABASE_URL": f"sqlite:///{instance / 'seadragon.db'}",
    }
    return GatewaySetup(env=env, port=port, keys=setup.keys, admin_token=setup.admin_token)


def run(workdir: Path, requests: int, concurrency: int, seed: int, redis_url: str | None = None) -> Report:
    """The whole chaos run against fresh gateways and a simulator; the report of what held.

    With ``redis_url``: two instances on that Redis (each its own request log), and the first
    is killed with SIGKILL halfway; the survivor must account for all of its requests and
    the shared queue must come back empty within the lease.
    """
    report = Report()
    simulator = start_simulator(workdir, sim_config())
    gateways: list[Service] = []
    try:
        setup = prepare_gateway(workdir, f"http://{HOST}:{simulator.port}", 2, PRIORITIES)
        setups = [setup]
        if redis_url:
            setup.env["SEADRAGON_REDIS_URL"] = redis_url
            setups.append(_twin(workdir, setup))
        gateways = [start_gateway(workdir, each) for each in setups]
        urls = [f"http://{HOST}:{each.port}" for each in setups]
        admin = {"Authorization": f"Bearer {setup.admin_token}"}
        kill = None
        if redis_url:

            def kill() -> None:
                assert gateways[0].process is not None
                gateways[0].process.send_signal(signal.SIGKILL)

        started = time.monotonic()
        keys = list(setup.keys.values())
        report.outcomes = asyncio.run(drive(urls, keys, requests, concurrency, seed, kill))
        report.seconds = time.monotonic() - started
        _settle(urls[-1], admin, LEASE_S + SETTLE_S if redis_url else SETTLE_S, report)
        for gateway in gateways:
            gateway.stop()  # SIGTERM: the request log is flushed (the killed one is gone already)
        survivors = [outcome for outcome in report.outcomes if outcome.instance == len(setups) - 1]
        errors = [outcome for outcome in survivors if outcome.expected is None]
        if errors:
            report.problems.append(f"{len(errors)} transport errors, e.g. {errors[0].request_id}")
        check_rows(_db(setups[-1]), survivors, report)
        if redis_url:
            check_killed(_db(setups[0]), [o for o in report.outcomes if o.instance == 0], report)
    finally:
        for gateway in gateways:
            gateway.stop()
        simulator.stop()
    return report


def check_killed(path: Path, outcomes: list[Outcome], report: Report) -> None:
    """The killed instance: at most one row per request (rows not yet written died with it)."""
    with sqlite3.connect(path) as conn:
        ids = [
            row[0] for row in conn.execute("SELECT request_id FROM request_log WHERE endpoint = '/api/chat'")
        ]
    report.killed_rows = len(ids)
    if len(ids) != len(set(ids)) or len(ids) > len(outcomes):
        report.problems.append(
            f"killed instance: {len(ids)} rows ({len(set(ids))} distinct) for {len(outcomes)}"
        )


def main(argv: list[str] | None = None) -> int:
    """Run, print the figures and every problem; exit 1 if anything was left behind or mislogged."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=48)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--redis", help="two instances on this Redis URL, one killed (SIGKILL) halfway")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="seadragon-chaos-") as tmp:
        report = run(Path(tmp), args.requests, args.concurrency, args.seed, args.redis)
    plans = Counter(outcome.plan for outcome in report.outcomes)
    print(f"{len(report.outcomes)} requests in {report.seconds:.1f} s; plans: {dict(plans)}")
    print(f"{report.rows} request-log rows; statuses: {dict(sorted(report.statuses.items()))}")
    if args.redis:
        killed = sum(outcome.instance == 0 for outcome in report.outcomes)
        print(
            f"killed instance: {killed} requests sent to it, {report.killed_rows} rows written before SIGKILL"
        )
    for problem in report.problems[:30]:
        print(f"PROBLEM: {problem}")
    print(
        "OK: nothing left behind, one row per request"
        if not report.problems
        else f"{len(report.problems)} problems"
    )
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
