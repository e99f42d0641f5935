"""Q1 in process: 10,000 requests queued on a 1-slot backend, served in exact priority order.

Run ``python bench/bench_queue.py`` (``--quick`` for 2,000). It queues tickets with
random priorities on one backend with one slot, then releases slot after slot and
checks every grant against the order docs/contract.md §5 prescribes. It prints one Markdown
table (``| id | metric | direct | gateway | ratio | budget | result |``):

- enqueue: ``acquire()`` from its call until the ticket waits in the queue;
- dispatch: ``release()`` of the slot, which hands it to the next ticket;
- wake: resuming the granted ``acquire()`` to get its ``Grant``;
- RSS growth (``VmRSS`` from ``/proc/self/status``) with all tickets queued.

``--redis URL`` adds the shared queue: 1,000 tickets over two RedisScheduler
instances sharing one slot, timed end to end (enqueue reply; release to grant).

Each ``acquire()`` coroutine is driven by hand (``send``) rather than as an asyncio
task, so the figures are the scheduler's own work, not the event loop's. The
clock is the bench's: tickets arrive 10 ms apart, so aging (0.1 per minute)
really reorders near-equal priorities and the expected order is known exactly.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import signal
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from common.settings import Backend, Settings  # noqa: E402
from proxy_app.backends import BackendPool  # noqa: E402
from proxy_app.scheduler import LocalScheduler, Ticket  # noqa: E402

BUDGET_US = 50.0
BUDGET_RSS_MIB = 100.0
ARRIVAL_GAP_S = 0.01
AGING = 0.1
SOURCES = ("direct_api", "custom_app", "web_chat")


def rss_kib() -> int:
    """This process's resident set size, from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


class BenchClock:
    """A monotonic clock the bench sets: arrivals are exactly ``ARRIVAL_GAP_S`` apart."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def percentile(values: list[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)]


async def measure(n: int, seed: int) -> dict:
    """Queue ``n`` tickets on one slot, drain them, time every step and check the order."""
    rng = random.Random(seed)
    clock = BenchClock()
    settings = Settings(
        database_url="sqlite://",
        secret_key="bench",
        instance_dir=Path("/tmp"),
        max_queue=n + 1,
        queue_timeout=3600.0,
        aging_per_minute=AGING,
    )
    async with httpx.AsyncClient() as client:
        pool = BackendPool([Backend("http://127.0.0.1:11434", 1)], client)
        scheduler = LocalScheduler(settings, pool, clock=clock)
        holder = await scheduler.acquire(Ticket("holder", 0, "direct_api"))
        gc.collect()
        rss_before = rss_kib()
        coros, expected, enqueue_us = {}, [], []
        for i in range(n):
            clock.now = i * ARRIVAL_GAP_S
            priority = rng.randint(0, 10)
            ticket = Ticket(f"r{i}", priority, SOURCES[priority % 3])
            started = time.perf_counter()
            coro = scheduler.acquire(ticket)
            slot = coro.send(None)  # runs until it waits: yields the future of its slot
            enqueue_us.append((time.perf_counter() - started) * 1e6)
            coros[ticket.request_id] = (coro, slot)
            # The contract's order, computed the same way: base + rate x minutes, then arrival.
            expected.append((priority + AGING * (clock.now / 60.0), i, ticket.request_id))
        rss_peak = rss_kib()
        queued = scheduler.snapshot()["queue_length"]
        expected.sort()
        rank = {rid: place for place, (_, _, rid) in enumerate(expected, start=1)}
        sample = [f"r{i}" for i in range(0, n, max(n // 100, 1))]
        started = time.perf_counter()
        positions = [scheduler.position(rid) for rid in sample]
        position_us = (time.perf_counter() - started) * 1e6 / len(positions)
        served, dispatch_us, wake_us = [], [], []
        grant = holder
        for _ in range(n):
            started = time.perf_counter()
            scheduler.release(grant)
            dispatch_us.append((time.perf_counter() - started) * 1e6)
            # An O(n) look at every waiting ticket, for the first few releases only.
            granted = [rid for rid, (_, slot) in coros.items() if slot.done()] if len(served) < 3 else None
            rid = expected[len(served)][2]
            started = time.perf_counter()
            try:
                coros.pop(rid)[0].send(None)
            except StopIteration as done:
                grant = done.value
            else:
                raise AssertionError(f"{rid} was not granted when its turn came")
            wake_us.append((time.perf_counter() - started) * 1e6)
            assert granted is None or granted == [rid], f"granted {granted}, expected {rid}"
            served.append(grant.ticket.request_id)
        scheduler.release(grant)
        final = scheduler.snapshot()
    return {
        "n": n,
        "queued": queued,
        "in_order": served == [rid for _, _, rid in expected],
        "enqueue_us": enqueue_us,
        "dispatch_us": dispatch_us,
        "wake_us": wake_us,
        "position_us": position_us,
        "positions_ok": positions == [rank[rid] for rid in sample],
        "rss_mib": (rss_peak - rss_before) / 1024,
        "drained": final["queue_length"] == 0 and final["active_requests"] == 0,
    }


def table(result: dict) -> list[str]:
    """The Markdown rows for the runner's seven columns."""
    n = result["n"]
    lines = [
        "| id | metric | direct | gateway | ratio | budget | result |",
        "|---|---|---|---|---|---|---|",
    ]

    def row(metric: str, value: str, budget: str = "", ok: bool | None = None) -> None:
        verdict = "" if ok is None else ("pass" if ok else "**FAIL**")
        lines.append(f"| Q1 | {metric} |  | {value} |  | {budget} | {verdict} |")

    row(f"tickets queued on 1 slot (random priorities 0-10, aging {AGING}/min)", f"{result['queued']:,}")
    row("served in exact priority order", "yes" if result["in_order"] else "no", "exact", result["in_order"])
    for name in ("enqueue", "dispatch", "wake"):
        values = result[f"{name}_us"]
        mean = statistics.fmean(values)
        budget = f"≤ {BUDGET_US:g} µs" if name != "wake" else ""
        ok = mean <= BUDGET_US if name != "wake" else None
        row(f"{name} µs/op, mean", f"{mean:.1f}", budget, ok)
        row(f"{name} µs/op, p99 / max", f"{percentile(values, 0.99):.1f} / {max(values):.1f}")
    row(f"position() µs/call with {n:,} waiting", f"{result['position_us']:.1f}")
    row(
        "position() equals the place in the expected order",
        "yes" if result["positions_ok"] else "no",
        "exact",
        result["positions_ok"],
    )
    rss_ok = result["rss_mib"] <= BUDGET_RSS_MIB
    row(f"RSS growth with {n:,} queued, MiB", f"{result['rss_mib']:.1f}", f"≤ {BUDGET_RSS_MIB:g} MiB", rss_ok)
    row(
        "queue and slots empty after draining", "yes" if result["drained"] else "no", "yes", result["drained"]
    )
    return lines


async def measure_redis(url: str, n: int, seed: int) -> dict:
    """Two RedisScheduler instances sharing one slot: enqueue and release-to-grant latency, order."""
    from redis.asyncio import Redis

    from proxy_app.scheduler_redis import RedisScheduler

    rng = random.Random(seed)
    prefix = f"seadragon-bench:{rng.getrandbits(48):x}"
    settings = Settings(
        database_url="sqlite://",
        secret_key="bench",
        instance_dir=Path("/tmp"),
        max_queue=n + 1,
        aging_per_minute=0,
    )
    clients = [Redis.from_url(url) for _ in range(2)]
    # The backend is never called: its health check answers from memory.
    tags = httpx.MockTransport(lambda request: httpx.Response(200, json={"models": []}))
    async with httpx.AsyncClient(transport=tags) as client:
        pools = [BackendPool([Backend("http://127.0.0.1:11434", 1)], client) for _ in clients]
        schedulers = [
            RedisScheduler(settings, pool, c, prefix=prefix) for pool, c in zip(pools, clients, strict=True)
        ]
        for scheduler in schedulers:
            await scheduler.start()
        try:
            grant = await schedulers[0].acquire(Ticket("holder", 0, "direct_api"))
            owner, tasks, expected, enqueue_ms = {"holder": schedulers[0]}, {}, [], []
            for i in range(n):
                priority, scheduler = rng.randint(0, 10), schedulers[i % 2]
                ticket = Ticket(f"r{i}", priority, SOURCES[priority % 3])
                started = time.perf_counter()
                task = tasks[ticket.request_id] = asyncio.create_task(scheduler.acquire(ticket))
                while not task.done() and scheduler.position(ticket.request_id) is None:
                    await asyncio.sleep(0)
                if task.done():
                    task.result()  # a refusal ends the bench with its reason
                enqueue_ms.append((time.perf_counter() - started) * 1e3)
                owner[ticket.request_id] = scheduler
                expected.append((priority, i, ticket.request_id))
            expected.sort()
            served, grant_ms = [], []
            for _, _, rid in expected:
                started = time.perf_counter()
                owner[grant.ticket.request_id].release(grant)
                grant = await tasks[rid]
                grant_ms.append((time.perf_counter() - started) * 1e3)
                served.append(rid)
            owner[grant.ticket.request_id].release(grant)
        finally:
            for scheduler in schedulers:
                await scheduler.close()
            keys = [key async for key in clients[0].scan_iter(f"{prefix}:*")]
            if keys:
                await clients[0].delete(*keys)
            for c in clients:
                await c.aclose()
    return {
        "n": n,
        "in_order": served == [rid for _, _, rid in expected],
        "enqueue": enqueue_ms,
        "grant": grant_ms,
    }


def redis_table(result: dict) -> list[str]:
    """Information rows for the shared (Redis) queue."""
    n = result["n"]
    ok = result["in_order"]
    lines = [
        f"| Q1-redis | {n:,} tickets, 2 instances, 1 shared slot: served in priority order |  | "
        f"{'yes' if ok else 'no'} |  | exact | {'pass' if ok else '**FAIL**'} |"
    ]
    for name in ("enqueue", "grant"):
        values = result[name]
        lines.append(
            f"| Q1-redis | {name} ms/op, mean / p99 |  | {statistics.fmean(values):.2f} / "
            f"{percentile(values, 0.99):.2f} |  |  |  |"
        )
    return lines


def main() -> int:
    """Run the bench, print the table, exit 1 if a budget is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 tickets instead of 10,000")
    parser.add_argument("-n", type=int, default=None, help="number of tickets")
    parser.add_argument("--seed", type=int, default=20260101)
    parser.add_argument(
        "--redis", metavar="URL", help="also time the shared queue (RedisScheduler) on this Redis"
    )
    args = parser.parse_args()
    signal.alarm(300)  # bounded: a hung run ends instead of stalling a benchmark session
    n = args.n or (2_000 if args.quick else 10_000)
    result = asyncio.run(measure(n, args.seed))
    lines = table(result)
    if args.redis:
        lines += redis_table(asyncio.run(measure_redis(args.redis, min(n, 1_000), args.seed)))
    print("\n".join(lines))
    return 1 if any(line.endswith("| **FAIL** |") for line in lines) else 0


if __name__ == "__main__":
    raise SystemExit(main())
