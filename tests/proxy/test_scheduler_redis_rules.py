"""The rules of docs/contract.md §5, §7, §8 across two instances sharing one Redis queue."""

from __future__ import annotations

import asyncio

import pytest

from proxy_app.scheduler import ADMIN_CANCEL, AdminCancelled, Evicted, IdentityQueueFull, QueueFull, Ticket
from tests.conftest import require_service
from tests.proxy.redis_cluster import Cluster, enqueue
from tests.proxy.scheduling import FakeClock
from tests.waiting import await_until

pytestmark = pytest.mark.scaleout


@pytest.fixture
async def cluster():
    """Two or more instances on a fresh key prefix of the test Redis, cleaned up afterwards."""
    group = Cluster(require_service("SEADRAGON_TEST_REDIS_URL"))
    yield group
    await group.close()


async def next_grant(tasks: dict[str, asyncio.Task], done: list[str]) -> str:
    """Wait for exactly one more ticket to be granted; return its id."""
    await await_until(lambda: sum(t.done() for t in tasks.values()) > len(done))
    await asyncio.sleep(0.05)  # a second grant would show up now
    new = [rid for rid, t in tasks.items() if t.done() and rid not in done]
    assert len(new) == 1, new
    done.append(new[0])
    return new[0]


async def serve_in_order(owner: dict, holder, tasks: dict[str, asyncio.Task]) -> list[str]:
    """Release slot after slot (each on the instance that holds it) and return the grant order."""
    done, grant = [], holder
    while len(done) < len(tasks):
        owner[grant.ticket.request_id].release(grant)
        rid = await next_grant(tasks, done)
        grant = tasks[rid].result()
    owner[grant.ticket.request_id].release(grant)
    return done


async def test_fair_share_counts_an_identitys_requests_on_every_instance(cluster):
    a = await cluster.add(1, fair_share=0.5, aging_per_minute=0.0)
    b = await cluster.add(1, fair_share=0.5, aging_per_minute=0.0)
    holder = await a.acquire(Ticket("holder", 2, "custom_app", who="key:1"))
    owner, tasks = {"holder": a}, {}
    for rid, who, inst in [("a0", "key:1", b), ("a1", "key:1", a), ("b0", "key:2", b)]:
        tasks[rid] = await enqueue(inst, Ticket(rid, 2, "custom_app", who=who))
        owner[rid] = inst
    view = {row["request_id"]: row for row in await b.queue_view()}
    assert [view[r]["effective_priority"] for r in ("a0", "a1", "b0")] == [2.5, 3.0, 2.0]
    assert view["holder"]["state"] == "active" and view["holder"]["who"] == "key:1"
    assert await serve_in_order(owner, holder, tasks) == ["b0", "a0", "a1"]


async def test_a_newcomer_on_one_instance_evicts_the_worst_waiting_on_another(cluster):
    a = await cluster.add(1, max_queue=2, fair_share=0.0)
    b = await cluster.add(1, max_queue=2, fair_share=0.0)
    holder = await a.acquire(Ticket("holder", 1, "direct_api"))
    worst = await enqueue(a, Ticket("worst", 3, "web_chat"))
    kept = await enqueue(a, Ticket("kept", 2, "custom_app"))
    with pytest.raises(QueueFull):
        await b.acquire(Ticket("same", 3, "web_chat"))
    better = await enqueue(b, Ticket("better", 1, "direct_api"))
    await await_until(worst.done)
    assert isinstance(worst.exception(), Evicted) and worst.exception().retry_after >= 1
    tasks = {"better": better, "kept": kept}
    assert await serve_in_order({"holder": a, "better": b, "kept": a}, holder, tasks) == ["better", "kept"]


async def test_max_queued_holds_across_instances(cluster):
    a, b = await cluster.add(1), await cluster.add(1)
    holder = await a.acquire(Ticket("holder", 1, "direct_api"))
    waiting = await enqueue(a, Ticket("one", 1, "direct_api", who="key:1", max_queued=1))
    with pytest.raises(IdentityQueueFull) as refused:
        await b.acquire(Ticket("two", 1, "direct_api", who="key:1", max_queued=1))
    assert refused.value.status == 429 and refused.value.retry_after >= 1
    a.release(holder)
    a.release(await asyncio.wait_for(waiting, 3))


async def test_max_concurrent_holds_across_instances_and_others_go_past(cluster):
    a = await cluster.add(2, fair_share=0.0)
    b = await cluster.add(2, fair_share=0.0)
    first = await a.acquire(Ticket("k0", 1, "direct_api", who="key:1", max_concurrent=1))
    other = await b.acquire(Ticket("x", 3, "web_chat"))
    k1 = await enqueue(b, Ticket("k1", 1, "direct_api", who="key:1", max_concurrent=1))
    y = await enqueue(a, Ticket("y", 2, "custom_app"))
    b.release(other)
    await await_until(y.done)
    await asyncio.sleep(0.1)
    assert not k1.done() and b.position("k1") is not None
    a.release(first)
    grant = await asyncio.wait_for(k1, 3)
    b.release(grant)
    a.release(y.result())


async def test_affinity_uses_the_model_the_backend_served_last_on_any_instance(cluster):
    a = await cluster.add(1, model_affinity=0.5, fair_share=0.0, aging_per_minute=0.0)
    b = await cluster.add(1, model_affinity=0.5, fair_share=0.0, aging_per_minute=0.0)
    holder = await a.acquire(Ticket("holder", 1, "direct_api", "big"))
    tasks, owner = {}, {"holder": a}
    for rid, priority, model, inst in [
        ("small", 1, "small", b),
        ("big", 1.5, "big", b),
        ("far", 2, "big", a),
    ]:
        tasks[rid] = await enqueue(inst, Ticket(rid, priority, "direct_api", model))
        owner[rid] = inst
    assert await serve_in_order(owner, holder, tasks) == ["big", "small", "far"]


async def test_affinity_believes_a_dispatch_on_any_instance_over_a_stale_api_ps(cluster):
    """Both instances' /api/ps still list "big" after "small" was given to the one-model backend."""
    rules = {"model_affinity": 1.0, "fair_share": 0.0, "aging_per_minute": 0.0}
    stale = {"b0": ["big:latest"]}
    a = await cluster.add(1, loaded=stale, **rules)
    b = await cluster.add(1, loaded=stale, **rules)
    holder = await a.acquire(Ticket("holder", 1, "direct_api", "small"))
    tasks, owner = {}, {"holder": a}
    for rid, priority, model in [("big", 1, "big"), ("small", 2, "small")]:
        tasks[rid] = await enqueue(b, Ticket(rid, priority, "direct_api", model))
        owner[rid] = b
    assert await serve_in_order(owner, holder, tasks) == ["small", "big"]


async def test_a_cancel_on_one_instance_reaches_a_request_on_another(cluster):
    clock = FakeClock(0.0)
    a, b = await cluster.add(1, clock=clock), await cluster.add(1, clock=clock)
    holder = await b.acquire(Ticket("holder", 1, "direct_api", "m"))
    heard = []
    holder.on_cancel(heard.append)
    waits = await enqueue(b, Ticket("waits", 1, "direct_api", "m"))
    assert await a.cancel_request("waits") is True
    await await_until(waits.done)
    error = waits.exception()
    assert isinstance(error, AdminCancelled) and error.status == 503 and error.message == ADMIN_CANCEL
    assert await a.cancel_request("holder") is True
    await await_until(lambda: heard == [ADMIN_CANCEL])
    assert await a.cancel_request("nobody") is False
    clock.advance(8)
    b.release(holder)
    await b.flush()
    assert await a.cancel_request("holder") is False


async def test_eta_and_the_queue_view_use_shared_service_times(cluster):
    clock = FakeClock(0.0)
    a, b = await cluster.add(1, clock=clock), await cluster.add(1, clock=clock)
    first = await a.acquire(Ticket("first", 1, "direct_api", "m", endpoint="/api/chat"))
    clock.advance(6)
    a.release(first)  # one request of m took 6 s on b0
    await a.flush()
    holder = await a.acquire(Ticket("holder", 1, "direct_api", "m"))
    q1 = await enqueue(b, Ticket("q1", 1, "direct_api", "m", endpoint="/api/chat"))
    await await_until(lambda: b.eta("q1") == 6)
    rows = await a.queue_view()
    waiting = [r for r in rows if r["state"] == "waiting"]
    assert [(r["request_id"], r["position"], r["eta_s"], r["endpoint"]) for r in waiting] == [
        ("q1", 1, 6, "/api/chat")
    ]
    active = [r for r in rows if r["state"] == "active"]
    assert [(r["request_id"], r["backend"]) for r in active] == [("holder", "http://b0:11434")]
    a.release(holder)
    b.release(await asyncio.wait_for(q1, 3))


async def test_affinity_passes_a_request_over_for_at_most_the_max_delay_across_instances(cluster):
    clock = FakeClock(0.0)
    rules = {"model_affinity": 0.5, "affinity_max_delay": 60, "fair_share": 0.0, "aging_per_minute": 0.0}
    a, b = await cluster.add(1, clock=clock, **rules), await cluster.add(1, clock=clock, **rules)
    holder = await a.acquire(Ticket("holder", 1, "direct_api", "big"))
    tasks, owner = {}, {"holder": a}
    for rid, priority, model, inst in [
        ("small", 1, "small", a),
        ("big1", 1.5, "big", b),
        ("big2", 1.5, "big", a),
    ]:
        tasks[rid] = await enqueue(inst, Ticket(rid, priority, "direct_api", model))
        owner[rid] = inst
    tasks["big3"] = await enqueue(b, Ticket("big3", 1.5, "direct_api", "big"))
    owner["big3"] = b
    done = []
    a.release(holder)  # small is passed over for the first time now (t = 0)
    assert await next_grant(tasks, done) == "big1"
    clock.advance(59)
    b.release(tasks["big1"].result())
    assert await next_grant(tasks, done) == "big2"
    clock.advance(1)
    a.release(tasks["big2"].result())  # 60 s since small was first passed over: its turn
    assert await next_grant(tasks, done) == "small"
    a.release(tasks["small"].result())
    assert await next_grant(tasks, done) == "big3"
    b.release(tasks["big3"].result())


async def test_max_parallel_holds_a_model_across_instances_and_other_models_go_past(cluster):
    a = await cluster.add(1, 1, 1, fair_share=0.0)
    b = await cluster.add(1, 1, 1, fair_share=0.0)
    first = await a.acquire(Ticket("big1", 1, "direct_api", "big", max_parallel=1))
    big2 = await enqueue(b, Ticket("big2", 1, "direct_api", "big", max_parallel=1))
    small = await enqueue(b, Ticket("small", 2, "custom_app", "small"))
    await await_until(small.done)
    await asyncio.sleep(0.3)  # a tick or so: two backends are free, the cap is one
    assert not big2.done() and b.position("big2") == 1
    a.release(first)
    b.release(await asyncio.wait_for(big2, 3))
    b.release(small.result())


async def test_a_turn_goes_home_on_any_instance_and_waits_for_it_at_most_the_delay(cluster):
    clock = FakeClock(0.0)
    a = await cluster.add(1, 2, clock=clock, sticky_max_delay=10.0)
    b = await cluster.add(1, 2, clock=clock, sticky_max_delay=10.0)
    others = [await a.acquire(Ticket(f"x{i}", 1, "direct_api", "m")) for i in range(2)]
    first = await a.acquire(Ticket("t1", 1, "direct_api", "m", conversation="c1"))
    home = first.backend.url  # b1 was full: the conversation started on b0
    for grant in others:
        a.release(grant)
    a.release(first)
    await a.flush()
    second = await b.acquire(Ticket("t2", 1, "direct_api", "m", conversation="c1"))
    assert second.backend.url == home  # b1 has more free slots, but the turn goes home
    # Home busy, b1 free: the next turn waits, until 10 s (of the shared clock) have passed.
    third = await enqueue(a, Ticket("t3", 1, "direct_api", "m", conversation="c1"))
    await asyncio.sleep(0.3)
    assert not third.done()
    clock.advance(10)
    grant = await asyncio.wait_for(third, 3)
    assert grant.backend.url != home
    b.release(second)
    a.release(grant)
