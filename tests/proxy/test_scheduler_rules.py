"""The scheduling rules of docs/contract.md §5, §7 and §8, one at a time (in-process scheduler)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from common.settings import Backend
from proxy_app.backends import BackendPool
from proxy_app.scheduler import (
    ADMIN_CANCEL,
    AdminCancelled,
    Evicted,
    IdentityQueueFull,
    LocalScheduler,
    QueueFull,
    Ticket,
)
from tests.proxy.scheduling import (
    FakeClock,
    drain,
    make_settings,
    queue_up,
    scheduler_for,
    settle,
    tags_handler,
)


@pytest.fixture
async def client():
    """An httpx client whose backends are all down unless a test says otherwise."""
    async with httpx.AsyncClient(transport=httpx.MockTransport(tags_handler({}))) as c:
        yield c


async def test_fair_share_lets_a_second_client_pass_a_backlog_of_the_same_priority(client):
    scheduler = scheduler_for(client, 1, fair_share=0.5, aging_per_minute=0.0)
    holder = await scheduler.acquire(Ticket("holder", 2, "custom_app", who="key:1"))
    tasks = await queue_up(
        scheduler,
        [Ticket(f"a{i}", 2, "custom_app", who="key:1") for i in range(3)]
        + [Ticket("b0", 2, "custom_app", who="key:2")],
    )
    # key:1's tickets carry 0.5, 1.0, 1.5 points (one, two, three of its own already in); b0 none.
    view = {row["request_id"]: row for row in await scheduler.queue_view()}
    assert [view[r]["effective_priority"] for r in ("a0", "a1", "a2", "b0")] == [2.5, 3.0, 3.5, 2.0]
    assert view["holder"]["state"] == "active" and view["holder"]["backend"] == "http://b0:11434"
    assert await drain(scheduler, holder, tasks) == ["b0", "a0", "a1", "a2"]


async def test_fair_share_zero_keeps_arrival_order(client):
    scheduler = scheduler_for(client, 1, fair_share=0.0)
    holder = await scheduler.acquire(Ticket("holder", 2, "custom_app", who="key:1"))
    tasks = await queue_up(
        scheduler,
        [
            Ticket("a0", 2, "custom_app", who="key:1"),
            Ticket("a1", 2, "custom_app", who="key:1"),
            Ticket("b0", 2, "custom_app", who="key:2"),
        ],
    )
    assert await drain(scheduler, holder, tasks) == ["a0", "a1", "b0"]


async def test_a_full_queue_evicts_the_newest_of_the_worst_for_a_better_newcomer(client):
    scheduler = scheduler_for(client, 1, max_queue=3, fair_share=0.0)
    holder = await scheduler.acquire(Ticket("holder", 1, "direct_api"))
    tasks = await queue_up(
        scheduler, [Ticket("w1", 3, "web_chat"), Ticket("w2", 3, "web_chat"), Ticket("k", 2, "custom_app")]
    )
    with pytest.raises(QueueFull) as refused:  # ranks no better than the worst: refused
        await scheduler.acquire(Ticket("w3", 3, "web_chat"))
    assert refused.value.status == 503 and refused.value.retry_after >= 1
    tasks |= await queue_up(scheduler, [Ticket("d", 1, "direct_api")])
    evicted = tasks.pop("w2").exception()
    assert isinstance(evicted, Evicted) and evicted.status == 503 and evicted.retry_after >= 1
    assert scheduler.snapshot()["queue_length"] == 3
    assert await drain(scheduler, holder, tasks) == ["d", "k", "w1"]


async def test_max_queued_refuses_the_newcomer_with_429(client):
    scheduler = scheduler_for(client, 1, fair_share=0.0)
    holder = await scheduler.acquire(Ticket("holder", 1, "direct_api", who="key:1", max_queued=1))
    tasks = await queue_up(scheduler, [Ticket("one", 1, "direct_api", who="key:1", max_queued=1)])
    with pytest.raises(IdentityQueueFull) as refused:
        await scheduler.acquire(Ticket("two", 1, "direct_api", who="key:1", max_queued=1))
    assert refused.value.status == 429 and refused.value.retry_after >= 1
    tasks |= await queue_up(scheduler, [Ticket("other", 1, "direct_api", who="key:2", max_queued=1)])
    assert await drain(scheduler, holder, tasks) == ["one", "other"]


async def test_max_concurrent_makes_a_request_wait_while_others_go_past_it(client):
    scheduler = scheduler_for(client, 2, fair_share=0.0)
    first = await scheduler.acquire(Ticket("a0", 1, "direct_api", who="key:1", max_concurrent=1))
    other = await scheduler.acquire(Ticket("x", 3, "web_chat"))
    tasks = await queue_up(
        scheduler,
        [
            Ticket("a1", 1, "direct_api", who="key:1", max_concurrent=1),
            Ticket("b", 2, "custom_app"),
            Ticket("c", 3, "web_chat"),
        ],
    )
    scheduler.release(other)  # a1 is first in line but key:1 holds its one slot: b goes
    await settle()
    assert tasks["b"].done() and not tasks["a1"].done()
    assert scheduler.position("a1") == 1
    scheduler.release(first)  # now key:1 may go again, ahead of c
    await settle()
    assert tasks["a1"].done() and not tasks["c"].done()
    scheduler.release(tasks["a1"].result())
    scheduler.release(tasks["b"].result())
    await settle()
    assert tasks["c"].done()


async def test_affinity_prefers_a_loaded_model_within_the_slack_but_not_past_the_delay(client):
    clock = FakeClock()
    scheduler = scheduler_for(
        client,
        1,
        clock=clock,
        model_affinity=0.5,
        affinity_max_delay=60,
        fair_share=0.0,
        aging_per_minute=0.0,
    )
    holder = await scheduler.acquire(Ticket("holder", 1, "direct_api", "big"))
    tasks = await queue_up(
        scheduler,
        [
            Ticket("small", 1, "direct_api", "small"),
            Ticket("big1", 1.5, "direct_api", "big"),
            Ticket("big2", 1.5, "direct_api", "big"),
            Ticket("big3", 1.5, "direct_api", "big"),
        ],
    )
    scheduler.release(holder)  # big is loaded: big1 (within 0.5 of small) goes first
    await settle()
    assert tasks["big1"].done() and not tasks["small"].done()
    clock.advance(59)
    scheduler.release(tasks["big1"].result())  # small first passed over 59 s ago: big2 may still go
    await settle()
    assert tasks["big2"].done() and not tasks["small"].done()
    clock.advance(1)
    scheduler.release(tasks["big2"].result())  # 60 s since small was first passed over: its turn
    await settle()
    assert tasks["small"].done() and not tasks["big3"].done()
    scheduler.release(tasks["small"].result())
    await settle()
    assert tasks["big3"].done()


async def test_affinity_never_takes_a_ticket_beyond_the_slack(client):
    scheduler = scheduler_for(client, 1, model_affinity=0.5, fair_share=0.0, aging_per_minute=0.0)
    holder = await scheduler.acquire(Ticket("holder", 1, "direct_api", "big"))
    tasks = await queue_up(
        scheduler, [Ticket("small", 1, "direct_api", "small"), Ticket("big", 1.75, "direct_api", "big")]
    )
    assert await drain(scheduler, holder, tasks) == ["small", "big"]


@contextlib.asynccontextmanager
async def one_model_backend(listed: list[str]) -> AsyncIterator[tuple[BackendPool, LocalScheduler]]:
    """One backend serving big and small whose /api/ps lists ``listed``, checked once, and its scheduler."""
    handler = tags_handler({"b0": ["big:latest", "small:latest"]}, {"b0": listed})
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        pool = BackendPool([Backend("http://b0:11434", 1)], http)
        scheduler = LocalScheduler(make_settings(model_affinity=1.0, fair_share=0.0), pool, clock=FakeClock())
        await pool.check_all()
        yield pool, scheduler


async def test_affinity_uses_the_models_api_ps_reports_loaded():
    async with one_model_backend(["small:latest"]) as (pool, scheduler):
        assert pool.backends[0].loaded == frozenset({"small:latest"})
        holder = await scheduler.acquire(Ticket("holder", 1, "direct_api"))  # no model: loads nothing
        tasks = await queue_up(
            scheduler, [Ticket("big", 1, "direct_api", "big"), Ticket("small", 2, "direct_api", "small")]
        )
        assert await drain(scheduler, holder, tasks) == ["small", "big"]


async def test_affinity_believes_a_newer_dispatch_over_a_stale_api_ps():
    """/api/ps still lists "big" after "small" was given to a one-model backend: only small is loaded."""
    async with one_model_backend(["big:latest"]) as (pool, scheduler):
        holder = await scheduler.acquire(Ticket("holder", 1, "direct_api", "small"))  # swaps big out
        await pool.check_all()  # a poll answered before the swap shows: big still listed
        assert pool.backends[0].loaded == frozenset({"big:latest"})
        assert pool.backends[0].has_loaded("small") and not pool.backends[0].has_loaded("big")
        tasks = await queue_up(
            scheduler, [Ticket("big", 1, "direct_api", "big"), Ticket("small", 2, "direct_api", "small")]
        )
        assert await drain(scheduler, holder, tasks) == ["small", "big"]


async def test_eta_comes_from_recent_service_times_of_the_model(client):
    clock = FakeClock()
    scheduler = scheduler_for(client, 1, clock=clock)
    first = await scheduler.acquire(Ticket("first", 1, "direct_api", "m"))
    tasks = await queue_up(
        scheduler, [Ticket("q1", 1, "direct_api", "m"), Ticket("q2", 1, "direct_api", "m")]
    )
    assert scheduler.eta("q1") is None  # nothing measured yet
    clock.advance(10)
    scheduler.release(first)  # "first" took 10 s; q1 now holds the slot
    await settle()
    assert scheduler.position("q2") == 1 and scheduler.eta("q2") == 10
    tasks |= await queue_up(scheduler, [Ticket("q3", 1, "direct_api", "m")])
    assert scheduler.eta("q3") == 20 and scheduler.eta("unknown") is None
    rows = [r for r in await scheduler.queue_view() if r["state"] == "waiting"]
    assert [(r["request_id"], r["position"], r["eta_s"]) for r in rows] == [("q2", 1, 10), ("q3", 2, 20)]


async def test_an_administrator_cancels_a_waiting_and_an_active_request(client):
    scheduler = scheduler_for(client, 1)
    holder = await scheduler.acquire(Ticket("holder", 1, "direct_api"))
    heard = []
    holder.on_cancel(heard.append)
    tasks = await queue_up(scheduler, [Ticket("waits", 1, "direct_api")])
    assert await scheduler.cancel_request("waits") is True
    await settle()
    error = tasks["waits"].exception()
    assert isinstance(error, AdminCancelled) and error.status == 503 and error.message == ADMIN_CANCEL
    assert await scheduler.cancel_request("holder") is True and heard == [ADMIN_CANCEL]
    late = []
    holder.on_cancel(late.append)  # subscribing after the cancel still hears it
    assert late == [ADMIN_CANCEL]
    assert await scheduler.cancel_request("nobody") is False
    scheduler.release(holder)
    assert await scheduler.cancel_request("holder") is False
