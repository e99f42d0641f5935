"""The Redis scheduler: several instances share one queue and one set of slots (real Redis)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from common.settings import Backend
from proxy_app.backends import BackendPool
from proxy_app.scheduler import (
    Evicted,
    IdentityQueueFull,
    LimitSubject,
    QueueFull,
    QueueTimeout,
    Revoked,
    SchedulerError,
    Ticket,
)
from proxy_app.scheduler_redis import RedisScheduler
from tests.conftest import require_service
from tests.live import free_port
from tests.proxy.redis_cluster import LEASE, TICK, Cluster, enqueue
from tests.proxy.scheduler_model import SOURCES, Reference, configs, limits, overrides_for, step, subject_of
from tests.proxy.scheduling import FakeClock, make_settings, tags_handler
from tests.waiting import await_until

pytestmark = pytest.mark.scaleout
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def cluster():
    """A fresh key prefix on the test Redis, cleaned up afterwards."""
    group = Cluster(require_service("SEADRAGON_TEST_REDIS_URL"))
    yield group
    await group.close()


async def test_two_instances_share_one_slot_and_serve_in_global_priority_order(cluster):
    a, b = await cluster.add(1), await cluster.add(1)
    holder = await a.acquire(Ticket("holder", 0, "direct_api"))
    plan = [("w-a", 3, a), ("k-b", 2, b), ("d-a", 1, a), ("k-a", 2, a), ("d-b", 1, b)]
    owner = {"holder": a}
    tasks = {}
    for rid, priority, scheduler in plan:
        tasks[rid] = await enqueue(scheduler, Ticket(rid, priority, SOURCES[priority]))
        owner[rid] = scheduler
    assert not any(task.done() for task in tasks.values())
    order, grant = [], holder
    for _ in plan:
        owner[grant.ticket.request_id].release(grant)
        await await_until(lambda: sum(task.done() for task in tasks.values()) == len(order) + 1)
        await asyncio.sleep(0.05)  # a second grant would show up now: one slot only
        done = [rid for rid, task in tasks.items() if task.done() and rid not in order]
        assert len(done) == 1
        order.append(done[0])
        grant = tasks[done[0]].result()
    assert order == ["d-a", "d-b", "k-b", "k-a", "w-a"]
    owner[grant.ticket.request_id].release(grant)


async def test_a_full_shared_queue_refuses_on_every_instance(cluster):
    a, b = await cluster.add(1, max_queue=2), await cluster.add(1, max_queue=2)
    await a.acquire(Ticket("holder", 1, "direct_api"))
    await enqueue(a, Ticket("one", 1, "direct_api"))
    await enqueue(b, Ticket("two", 1, "direct_api"))
    with pytest.raises(QueueFull) as refused:
        await b.acquire(Ticket("three", 1, "direct_api"))
    assert refused.value.status == 503 and 1 <= refused.value.retry_after <= 60


async def test_a_client_leaving_removes_its_ticket_from_the_shared_queue(cluster):
    a, b = await cluster.add(1), await cluster.add(1)
    holder = await a.acquire(Ticket("holder", 1, "direct_api"))
    gone = await enqueue(b, Ticket("gone", 1, "direct_api"))
    stays = await enqueue(a, Ticket("stays", 3, "web_chat"))
    await await_until(lambda: a.snapshot()["queue_length"] == 2)
    gone.cancel()
    await await_until(lambda: a.snapshot()["queue_length"] == 1)
    assert b.waiting() == [] and b.position("gone") is None
    a.release(holder)
    grant = await asyncio.wait_for(stays, 3)
    assert grant.ticket.request_id == "stays"
    a.release(grant)


async def test_cancel_makes_acquire_raise_the_given_error(cluster):
    a = await cluster.add(1)
    await a.acquire(Ticket("holder", 1, "direct_api"))
    task = await enqueue(a, Ticket("revoked", 2, "custom_app"))
    assert [t.request_id for t in a.waiting()] == ["revoked"]
    assert a.cancel("revoked", Revoked("the API key was revoked", status=403))
    with pytest.raises(Revoked) as raised:
        await task
    assert raised.value.status == 403
    assert not a.cancel("revoked", Revoked("again"))
    await await_until(lambda: a.snapshot()["queue_length"] == 0)


@pytest.mark.parametrize("slot_free", [True, False])
async def test_a_cancel_while_the_enqueue_is_on_its_way_leaks_neither_ticket_nor_slot(cluster, slot_free):
    a = await cluster.add(1)
    holder = None if slot_free else await a.acquire(Ticket("holder", 1, "direct_api"))
    task = asyncio.create_task(a.acquire(Ticket("early", 1, "direct_api")))
    await asyncio.sleep(0)  # the enqueue is sent, its reply not read yet
    assert a.cancel("early", Revoked("revoked", status=403))
    with pytest.raises(Revoked):
        await task
    await a.flush()
    await await_until(lambda: a.snapshot()["queue_length"] == 0)
    if holder is not None:
        a.release(holder)
    grant = await asyncio.wait_for(a.acquire(Ticket("next", 1, "direct_api")), 3)
    assert grant.waited < 0.5, "the slot was not held by the cancelled request"
    a.release(grant)


async def test_a_request_waiting_past_queue_timeout_gets_queue_timeout(cluster):
    a = await cluster.add(1, queue_timeout=0.2)
    await a.acquire(Ticket("holder", 1, "direct_api"))
    with pytest.raises(QueueTimeout):
        await asyncio.wait_for(a.acquire(Ticket("late", 1, "direct_api")), 3)
    await await_until(lambda: a.snapshot()["queue_length"] == 0)


async def test_snapshot_counts_the_whole_shared_queue(cluster):
    a, b = await cluster.add(1, 1), await cluster.add(1, 1)
    await a.acquire(Ticket("a1", 1, "direct_api"))
    await b.acquire(Ticket("b1", 3, "web_chat"))
    await enqueue(b, Ticket("b2", 3, "web_chat"))
    await enqueue(a, Ticket("a2", 2, "custom_app"))
    await await_until(lambda: a.snapshot()["queue_length"] == 2)
    snap = a.snapshot()
    assert snap["queue_by_source"] == {"direct_api": 0, "custom_app": 1, "web_chat": 1}
    assert snap["active_by_source"] == {"direct_api": 1, "custom_app": 0, "web_chat": 1}
    assert snap["active_requests"] == 2
    assert [backend["in_use"] for backend in snap["backends"]] == [1, 1]
    assert 0 <= snap["oldest_wait"] < 5
    await await_until(lambda: b.position("b2") == 2 and a.position("a2") == 1)


@pytest.mark.parametrize(("gap_seconds", "first"), [(1199, "direct"), (1201, "web")])
async def test_aging_orders_tickets_across_instances(cluster, gap_seconds, first):
    clock = FakeClock(0.0)
    a = await cluster.add(1, clock=clock, aging_per_minute=0.1)
    b = await cluster.add(1, clock=clock, aging_per_minute=0.1)
    holder = await a.acquire(Ticket("holder", 0, "direct_api"))
    web = await enqueue(a, Ticket("web", 3, "web_chat"))
    clock.advance(gap_seconds)
    direct = await enqueue(b, Ticket("direct", 1, "direct_api"))
    a.release(holder)
    await await_until(lambda: web.done() or direct.done())
    assert (web if first == "web" else direct).done()


async def test_equal_priorities_for_different_models_go_in_arrival_order(cluster):
    a, b = await cluster.add(1), await cluster.add(1)
    holder = await a.acquire(Ticket("holder", 1, "direct_api"))
    tasks = {}
    for rid, model, scheduler in [("m1", "big", a), ("m2", "small", b), ("m3", "big", b), ("m4", "small", a)]:
        tasks[rid] = await enqueue(scheduler, Ticket(rid, 2, "custom_app", model))
    owner = {"holder": a, "m1": a, "m2": b, "m3": b, "m4": a}
    order, grant = [], holder
    for _ in tasks:
        owner[grant.ticket.request_id].release(grant)
        await await_until(lambda: sum(task.done() for task in tasks.values()) == len(order) + 1)
        order.append(next(rid for rid, task in tasks.items() if task.done() and rid not in order))
        grant = tasks[order[-1]].result()
    assert order == ["m1", "m2", "m3", "m4"]
    owner[grant.ticket.request_id].release(grant)


async def test_a_model_routes_to_the_backend_that_has_it(cluster):
    a = await cluster.add(1, 1)
    b0, b1 = a.pool.backends
    b0.models, b1.models = frozenset({"big:latest"}), frozenset({"small:latest"})
    big = await a.acquire(Ticket("big-1", 1, "direct_api", "big"))
    assert big.backend is b0
    waiting = await enqueue(a, Ticket("big-2", 0, "direct_api", "big"))
    small = await asyncio.wait_for(a.acquire(Ticket("small-1", 3, "web_chat", "small")), 3)
    assert small.backend is b1 and not waiting.done()


CRASHER = """
import asyncio, sys
import httpx
from redis.asyncio import Redis
from common.settings import Backend
from proxy_app.backends import BackendPool
from proxy_app.scheduler import Ticket
from proxy_app.scheduler_redis import RedisScheduler
from tests.proxy.scheduling import make_settings

async def main(url, prefix, lease, tick):
    up = httpx.MockTransport(lambda request: httpx.Response(200, json={"models": []}))
    async with httpx.AsyncClient(transport=up) as http:
        pool = BackendPool([Backend("http://b0:11434", 1)], http)
        scheduler = RedisScheduler(make_settings(), pool, Redis.from_url(url), prefix=prefix,
                                   lease=float(lease), tick=float(tick))
        await scheduler.start()
        await scheduler.acquire(Ticket("crasher-holds", 1, "direct_api"))
        waiting = asyncio.ensure_future(scheduler.acquire(Ticket("crasher-waits", 0, "direct_api")))
        while scheduler.position("crasher-waits") is None:
            await asyncio.sleep(0.01)
        print("held", flush=True)
        await waiting

asyncio.run(main(*sys.argv[1:]))
"""


async def test_a_crashed_instance_gives_its_slot_back_when_its_lease_runs_out(cluster):
    survivor = await cluster.add(1)
    crasher = subprocess.Popen(
        [sys.executable, "-c", CRASHER, cluster.url, cluster.prefix, str(LEASE), str(TICK)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(crasher.stdout.readline), 20)
        assert line.strip() == "held"
        task = await enqueue(survivor, Ticket("survivor", 5, "web_chat"))
        await asyncio.sleep(2 * LEASE)
        assert not task.done(), "a live instance keeps its slot past the lease by refreshing it"
        crasher.kill()  # SIGKILL: no release, no clean-up
        killed = time.monotonic()
        grant = await asyncio.wait_for(task, 4 * LEASE + 2)
        elapsed = time.monotonic() - killed
    finally:
        crasher.kill()
        crasher.wait()
        crasher.stdout.close()
    # Its held slot's lease ran out, and its waiting ticket (priority 0) was skipped.
    assert grant.ticket.request_id == "survivor"
    assert elapsed <= LEASE + 0.8, f"slot came back after {elapsed:.2f} s"
    survivor.release(grant)


async def run_redis(url: str, config: dict, policy: dict, ops) -> None:
    """The reference-model check against two instances sharing one Redis queue."""
    cluster, clock = Cluster(url), FakeClock(0.0)
    tasks, owner, grants, order = {}, {}, {}, []
    try:
        overrides = overrides_for(config)
        instances = [await cluster.add(config["slots"], clock=clock, **overrides) for _ in range(2)]
        ref = Reference.of(config)

        def record(task: asyncio.Task) -> None:
            if not task.cancelled() and task.exception() is None:
                grants[task.get_name()] = task.result()
                order.append(task.get_name())

        for number, op in enumerate(ops):
            if op[0] == "enqueue":
                _, base, who, model = op
                rid, instance = f"r{number}", instances[number % 2]
                max_queued, max_concurrent = policy.get(subject_of(who), (None, None))
                evicted_before = len(ref.evicted)
                cap = config["caps"][model]
                expected = ref.enqueue(rid, base, who, model, max_queued, max_concurrent, cap)
                owner[rid] = instance
                bound = (LimitSubject(subject_of(who), max_queued, max_concurrent),) if who else ()
                ticket = Ticket(rid, base, SOURCES[base], model, who, limits=bound)
                ticket.max_parallel = cap
                tasks[rid] = await enqueue(instance, ticket)
                tasks[rid].set_name(rid)
                tasks[rid].add_done_callback(record)
                await asyncio.sleep(0)
                if expected == "full":
                    assert isinstance(tasks[rid].exception(), QueueFull)
                elif expected == "identity_full":
                    assert isinstance(tasks[rid].exception(), IdentityQueueFull)
                elif expected in ("queued", "evicted"):
                    assert not tasks[rid].done()
                for victim in ref.evicted[evicted_before:]:
                    await await_until(lambda v=victim: tasks[v].done())
                    assert isinstance(tasks[victim].exception(), Evicted)
            elif op[0] == "release" and ref.held:
                rid = ref.held[op[1] % len(ref.held)]
                ref.release(rid)
                owner[rid].release(grants[rid])
            elif op[0] in ("leave", "revoke") and ref.waiting:
                rid = ref.waiting[op[1] % len(ref.waiting)].rid
                ref.remove(rid)
                if op[0] == "leave":
                    tasks[rid].cancel()
                else:
                    assert owner[rid].cancel(rid, Revoked("revoked"))
            elif op[0] == "advance":
                clock.advance(15 * (op[1] % 4 + 1))
                ref.now += 15 * (op[1] % 4 + 1)
            # Releases and departures reach Redis from background tasks (the interface's
            # release() and cancel() are synchronous): let them land before the next step.
            for instance in instances:
                await instance.flush()
            await await_until(lambda: order == ref.granted)
            view = await instances[number % 2].queue_view()
            assert [row["request_id"] for row in view if row["state"] == "waiting"] == [
                w.rid for w in ref.waiting
            ]
            effective = [row["effective_priority"] for row in view if row["state"] == "waiting"]
            expected = [float(w.score - ref.rate * ref.now / 60) for w in ref.waiting]
            assert effective == pytest.approx(expected, abs=1e-5)  # points per request and per GPU time
            assert sorted(row["request_id"] for row in view if row["state"] == "active") == sorted(ref.held)
        await asyncio.sleep(0.1)
        assert order == ref.granted, "no late grant beyond the reference"
        await await_until(lambda: instances[0].snapshot()["queue_length"] == len(ref.waiting))
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        await cluster.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=configs, policy=limits, ops=st.lists(step, min_size=8, max_size=30))
def test_the_shared_grant_order_matches_the_reference_model(config, policy, ops):
    url = require_service("SEADRAGON_TEST_REDIS_URL")
    asyncio.run(run_redis(url, config, policy, ops))


async def test_an_unreachable_redis_answers_503_with_retry_after():
    client = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    async with httpx.AsyncClient(transport=httpx.MockTransport(tags_handler({}))) as http:
        pool = BackendPool([Backend("http://b0:11434", 1)], http)
        scheduler = RedisScheduler(make_settings(), pool, client, prefix="sdtest:unreachable")
        with pytest.raises(SchedulerError) as refused:
            await scheduler.acquire(Ticket("r", 1, "direct_api"))
        await scheduler.flush()
    await client.aclose()
    assert refused.value.status == 503 and refused.value.retry_after == 5
    assert scheduler.waiting() == [] and scheduler.position("r") is None


async def test_close_fails_local_waiters_and_gives_back_local_slots(cluster):
    a, b = await cluster.add(1), await cluster.add(1)
    await a.acquire(Ticket("holder", 1, "direct_api"))
    waiting = await enqueue(a, Ticket("waits", 1, "direct_api"))
    await a.close()
    with pytest.raises(SchedulerError) as failed:
        await waiting
    assert failed.value.status == 503
    grant = await asyncio.wait_for(b.acquire(Ticket("next", 1, "direct_api")), 3)
    # Freed by close, not by the lease running out (which would take LEASE seconds).
    assert grant.waited < LEASE / 2, "the slot was free at once, not after the lease"
    b.release(grant)
