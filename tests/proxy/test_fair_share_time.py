"""Fair share by time (docs/contract.md §13), one rule at a time, in both schedulers.

Besides ``FAIR_SHARE`` points per request already in, an identity's new request gets
``FAIR_SHARE`` points per whole ``FAIR_SHARE_SECONDS`` of GPU time it used in the last
``FAIR_SHARE_WINDOW`` seconds: 25 s with the defaults (10 s, 300 s, 0.5) adds 2 x 0.5 = 1 point.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from proxy_app.gpu_time import GpuUsage
from proxy_app.scheduler import Ticket
from tests.conftest import require_service
from tests.proxy.redis_cluster import Cluster, enqueue
from tests.proxy.scheduling import FakeClock, drain, queue_up, scheduler_for


def test_usage_counts_what_falls_in_the_window_running_slots_included():
    usage = GpuUsage(window=300)
    usage.start("key:1", "a", 0)
    usage.end("key:1", "a", 25)
    assert usage.used("key:1", 25) == 25
    usage.start("key:1", "b", 100)
    assert usage.used("key:1", 110) == 35  # 25 done + 10 still running
    usage.end("key:1", "b", 110)
    assert usage.used("key:1", 310) == 25  # the window starts at 10: 15 s of "a", all 10 of "b"
    assert usage.used("key:1", 410) == 0
    assert usage.used("key:2", 410) == 0
    usage.end("key:1", "never-started", 5)  # a release without a start changes nothing
    usage.start("", "anonymous", 0)
    assert usage.used("", 10) == 0


async def test_25_gpu_seconds_add_one_point_with_the_defaults(client):
    clock = FakeClock()
    scheduler = scheduler_for(client, 1, clock=clock, fair_share=0.5, aging_per_minute=0.0)
    heavy = await scheduler.acquire(Ticket("heavy", 2, "custom_app", who="key:1"))
    clock.advance(25)
    scheduler.release(heavy)
    blocker = await scheduler.acquire(Ticket("blocker", 0, "direct_api", who="ip:9"))
    tasks = await queue_up(
        scheduler, [Ticket("k1", 2, "custom_app", who="key:1"), Ticket("k2", 2, "custom_app", who="key:2")]
    )
    rows = {row["request_id"]: row for row in await scheduler.queue_view()}
    assert rows["k1"]["effective_priority"] == 3.0  # 25 s // 10 s = 2 steps x 0.5
    assert rows["k2"]["effective_priority"] == 2.0
    clock.advance(300)  # the 25 s leave the window: key:1 is light again
    late = await queue_up(scheduler, [Ticket("k1-late", 2, "custom_app", who="key:1")])
    rows = {row["request_id"]: row for row in await scheduler.queue_view()}
    assert rows["k1-late"]["effective_priority"] == 2.5  # only its waiting k1 counts now
    assert await drain(scheduler, blocker, {**tasks, **late}) == ["k2", "k1-late", "k1"]


async def test_fair_share_seconds_zero_turns_it_off(client):
    clock = FakeClock()
    scheduler = scheduler_for(client, 1, clock=clock, fair_share=0.5, fair_share_seconds=0.0)
    heavy = await scheduler.acquire(Ticket("heavy", 2, "custom_app", who="key:1"))
    clock.advance(100)
    scheduler.release(heavy)
    blocker = await scheduler.acquire(Ticket("blocker", 0, "direct_api", who="ip:9"))
    tasks = await queue_up(scheduler, [Ticket("k1", 2, "custom_app", who="key:1")])
    rows = {row["request_id"]: row for row in await scheduler.queue_view()}
    assert rows["k1"]["effective_priority"] == 2.0
    scheduler.release(blocker)
    scheduler.release(await tasks["k1"])


@pytest.mark.scaleout
async def test_gpu_time_used_on_one_instance_counts_on_another():
    cluster = Cluster(require_service("SEADRAGON_TEST_REDIS_URL"))
    clock = FakeClock(0.0)
    try:
        a = await cluster.add(1, clock=clock, fair_share=0.5, aging_per_minute=0.0)
        b = await cluster.add(1, clock=clock, fair_share=0.5, aging_per_minute=0.0)
        heavy = await a.acquire(Ticket("heavy", 2, "custom_app", who="key:1"))
        clock.advance(25)
        a.release(heavy)
        await a.flush()
        blocker = await a.acquire(Ticket("blocker", 0, "direct_api", who="ip:9"))
        k1 = await enqueue(b, Ticket("k1", 2, "custom_app", who="key:1"))
        rows = {row["request_id"]: row for row in await b.queue_view()}
        assert rows["k1"]["effective_priority"] == 3.0
        a.release(blocker)
        b.release(await asyncio.wait_for(k1, 3))
    finally:
        await cluster.close()


def test_identities_that_stopped_calling_are_forgotten():
    usage = GpuUsage(window=60)
    for i in range(100):  # a hundred end users, once each
        usage.start(f"key:1/end-user:{i}", "r", 0)
        usage.end(f"key:1/end-user:{i}", "r", 1)
    usage.start("key:2", "late", 100)
    usage.end("key:2", "late", 110)
    assert set(usage._done) == {"key:2"}


def test_usage_equals_the_sum_over_every_interval_whatever_their_lengths():
    rng = random.Random(7)
    usage, spans, now = GpuUsage(window=50), [], 0.0
    running: dict[str, float] = {}
    for number in range(3000):
        now += rng.choice([0.0, 0.25, 1.0, 3.0])
        if running and rng.random() < 0.5:
            rid = rng.choice(sorted(running))
            usage.end("key:1", rid, now)
            spans.append((running.pop(rid), now))
        elif len(running) < 4:
            running[f"r{number}"] = now
            usage.start("key:1", f"r{number}", now)
        low = now - 50
        expected = sum(max(0.0, end - max(start, low)) for start, end in spans)
        expected += sum(now - max(start, low) for start in running.values())
        assert usage.used("key:1", now) == pytest.approx(expected, abs=1e-6)
