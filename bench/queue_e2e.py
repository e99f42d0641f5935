"""Q1 end to end: thousands of requests held in the gateway's queue on a 1-slot backend, served by priority.

One streaming request takes the only slot and stalls (the simulator's
``X-Sim-Fault: stall_mid``); then every request is sent at once, in shuffled
priority order, and the harness waits until the gateway reports all of them
queued. Leaving the stalled stream frees the slot; the simulator then sees the
requests one at a time, and the ``created_at`` it stamps on each reply gives
the exact order the gateway dispatched them in.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from datetime import UTC, datetime

import httpx

from bench import streams
from bench.procs import PeakSampler, process_tree, rss_of
from bench.report import Row
from bench.scenarios import CHAT, Scenario, Stack, chat_body
from bench.sizes import Sizes
from bench.stack import sim_config

PRIORITIES = tuple(range(10))
BLOCKER_FAULT = "stall_mid=3600,after=1"  # first token, then silence until the client leaves
FILL_TIMEOUT_S = 180  # to get every request into the queue
PER_REQUEST_DRAIN_S = 0.05  # generous: a served request takes a few milliseconds


def created_ns(line: bytes) -> int:
    """Nanoseconds since the epoch of a reply's ``created_at`` (RFC 3339 with up to 9 fraction digits)."""
    stamp = json.loads(line)["created_at"].removesuffix("Z")
    whole, _, fraction = stamp.partition(".")
    seconds = int(datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp())
    return seconds * 1_000_000_000 + int((fraction + "000000000")[:9])


def out_of_order(priorities: list[int]) -> int:
    """Adjacent pairs served lower-priority first (a larger number went before a smaller one)."""
    return sum(1 for a, b in zip(priorities, priorities[1:], strict=False) if a > b)


async def queue_length(client: httpx.AsyncClient, stack: Stack) -> int:
    """Requests waiting in the gateway's queue, from ``/api/admin/stats``."""
    response = await client.get(
        stack.gateway.url("/api/admin/stats"), headers={"Authorization": f"Bearer {stack.admin_token}"}
    )
    response.raise_for_status()
    return int(response.json()["queue_length"])


async def _fill(stack: Stack, n: int, sending: asyncio.Task) -> tuple[int, float]:
    """Poll until ``n`` requests wait (or time runs out); return the most seen and how long it took."""
    start = time.perf_counter()
    held = 0
    async with httpx.AsyncClient(timeout=10) as client:
        while time.perf_counter() - start < FILL_TIMEOUT_S and not sending.done():
            held = max(held, await queue_length(client, stack))
            if held >= n:
                break
            await asyncio.sleep(0.1)
    return held, time.perf_counter() - start


async def _run(stack: Stack, n: int) -> dict:
    gateway = stack.gateway
    order = [PRIORITIES[i % len(PRIORITIES)] for i in range(n)]
    random.Random(5).shuffle(order)
    requests = [
        streams.build_request(
            gateway.host, gateway.port, CHAT, chat_body(1, stream=False), {"X-API-Key": stack.keys[p]}
        )
        for p in order
    ]
    blocker = await streams.HeldStream().open(
        gateway.host,
        gateway.port,
        streams.build_request(
            gateway.host,
            gateway.port,
            CHAT,
            chat_body(3, stream=True),
            {"X-API-Key": stack.keys[PRIORITIES[-1]], "X-Sim-Fault": BLOCKER_FAULT},
        ),
        timeout=30,
    )
    pids = process_tree(gateway.pid)
    idle = rss_of(pids)
    timeout = FILL_TIMEOUT_S + n * PER_REQUEST_DRAIN_S + 30
    with PeakSampler(lambda: rss_of(pids)) as sampler:
        sending = asyncio.create_task(streams.fetch_many(gateway.host, gateway.port, requests, timeout))
        try:
            held, fill_s = await _fill(stack, n, sending)
        finally:
            await blocker.close()
        released = time.perf_counter()
        results = await sending
    drain_s = max((r.finished_at or released) for r in results) - released
    served = sorted((created_ns(r.last_line), p) for r, p in zip(results, order, strict=True) if r.ok)
    failed = [r for r in results if not r.ok]
    return {
        "held": held,
        "fill_s": fill_s,
        "drain_s": drain_s,
        "served": len(served),
        "inversions": out_of_order([p for _, p in served]),
        "growth": sampler.peak - idle,
        "failure": f"status {failed[0].status}: {failed[0].error}" if failed else "",
    }


def q1_held_queue(stack: Stack, sizes: Sizes) -> list[Row]:
    """Q1 over HTTP: all requests held at once, then served in exact priority order."""
    n = sizes.q1_requests
    r = streams.run(_run(stack, n))
    rows = [
        Row("Q1", "held in the queue at once (HTTP)", None, r["held"], f"all {n:,}", r["held"] >= n),
        Row(
            "Q1",
            "served, priority inversions",
            None,
            f"{r['served']:,} served, {r['inversions']} inv.",
            f"{n:,}, 0 inv.",
            r["served"] == n and r["inversions"] == 0,
        ),
        Row(
            "Q1",
            f"gateway RSS growth, {n:,} held (peak), MiB",
            None,
            r["growth"],
            "≤ 100 MiB",
            r["growth"] <= 100,
        ),
        Row("Q1", "queue fill rate, req/s (HTTP)", None, n / r["fill_s"] if r["fill_s"] else None),
        Row(
            "Q1",
            "drain rate, req/s (1 slot, HTTP)",
            None,
            r["served"] / r["drain_s"] if r["drain_s"] else None,
        ),
    ]
    if r["failure"]:
        rows.append(Row("Q1", f"first failure — {r['failure']}", None, None))
    return rows


Q1_E2E = Scenario(
    "Q1",
    "10,000 requests held on a 1-slot backend, served by priority",
    lambda _sizes: sim_config(),
    q1_held_queue,
    slots=1,
    priorities=PRIORITIES,
)
