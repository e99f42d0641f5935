"""The in-process scheduler: priority, aging, limits, cancellation, several backends."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from proxy_app.scheduler import (
    NoBackend,
    QueueFull,
    QueueTimeout,
    Revoked,
    SchedulerError,
    Ticket,
)
from tests.proxy.scheduling import FakeClock, drain, queue_up, scheduler_for, settle, tags_handler


async def test_it_serves_direct_then_key_then_web_chat_while_the_slot_is_busy(client):
    scheduler = scheduler_for(client, 1)
    holder = await scheduler.acquire(Ticket("holder", 1, "direct_api"))
    tasks = await queue_up(
        scheduler,
        [Ticket("web", 3, "web_chat"), Ticket("key", 2, "custom_app"), Ticket("direct", 1, "direct_api")],
    )
    assert not any(task.done() for task in tasks.values())
    assert await drain(scheduler, holder, tasks) == ["direct", "key", "web"]


@pytest.mark.parametrize(
    ("gap_seconds", "expected"),
    [(1199, ["direct", "web"]), (1200, ["web", "direct"]), (1201, ["web", "direct"])],
)
async def test_an_old_web_chat_request_overtakes_a_fresh_direct_one_past_the_boundary(
    client, gap_seconds, expected
):
    # Web chat 3 waiting since t0 vs direct 1 arriving at t0 + gap, aging 0.1/min:
    # equal effective priority at exactly 20 minutes, where arrival order decides.
    clock = FakeClock()
    scheduler = scheduler_for(client, 1, clock=clock, aging_per_minute=0.1)
    holder = await scheduler.acquire(Ticket("holder", 0, "direct_api"))
    tasks = await queue_up(scheduler, [Ticket("web", 3, "web_chat")])
    clock.advance(gap_seconds)
    tasks |= await queue_up(scheduler, [Ticket("direct", 1, "direct_api")])
    assert await drain(scheduler, holder, tasks) == expected


async def test_without_aging_a_fresh_direct_request_always_goes_first(client):
    clock = FakeClock()
    scheduler = scheduler_for(client, 1, clock=clock, aging_per_minute=0.0)
    holder = await scheduler.acquire(Ticket("holder", 0, "direct_api"))
    tasks = await queue_up(scheduler, [Ticket("web", 3, "web_chat")])
    clock.advance(86400)
    tasks |= await queue_up(scheduler, [Ticket("direct", 1, "direct_api")])
    assert await drain(scheduler, holder, tasks) == ["direct", "web"]


async def test_equal_priorities_are_served_in_arrival_order(client):
    scheduler = scheduler_for(client, 1)
    holder = await scheduler.acquire(Ticket("holder", 2, "custom_app"))
    names = [f"r{i}" for i in range(8)]
    tasks = await queue_up(scheduler, [Ticket(name, 2, "custom_app") for name in names])
    assert [scheduler.position(name) for name in names] == list(range(1, 9))
    assert await drain(scheduler, holder, tasks) == names


async def test_equal_priorities_for_different_models_go_in_arrival_order(client):
    scheduler = scheduler_for(client, 1)
    holder = await scheduler.acquire(Ticket("holder", 2, "custom_app"))
    models = {"m1": "big", "m2": "small", "m3": "big", "m4": None, "m5": "small"}
    tasks = await queue_up(scheduler, [Ticket(rid, 2, "custom_app", model) for rid, model in models.items()])
    assert await drain(scheduler, holder, tasks) == list(models)


async def test_a_full_queue_refuses_at_once_with_retry_after(client):
    scheduler = scheduler_for(client, 1, max_queue=2)
    holder = await scheduler.acquire(Ticket("holder", 1, "direct_api"))  # holds, does not wait
    tasks = await queue_up(scheduler, [Ticket("a", 1, "direct_api"), Ticket("b", 1, "direct_api")])
    with pytest.raises(QueueFull) as refused:
        await scheduler.acquire(Ticket("c", 1, "direct_api"))
    assert refused.value.status == 503
    assert isinstance(refused.value.retry_after, int) and 1 <= refused.value.retry_after <= 60
    assert scheduler.snapshot()["queue_length"] == 2
    assert await drain(scheduler, holder, tasks) == ["a", "b"]


async def test_a_zero_max_queue_still_grants_a_free_slot(client):
    scheduler = scheduler_for(client, 1, max_queue=0)
    grant = await scheduler.acquire(Ticket("a", 1, "direct_api"))
    with pytest.raises(QueueFull):
        await scheduler.acquire(Ticket("b", 1, "direct_api"))
    scheduler.release(grant)


async def test_a_request_waiting_past_queue_timeout_gets_queue_timeout(client):
    scheduler = scheduler_for(client, 1, queue_timeout=0.05)
    holder = await scheduler.acquire(Ticket("holder", 1, "direct_api"))
    with pytest.raises(QueueTimeout) as timed_out:
        await asyncio.wait_for(scheduler.acquire(Ticket("late", 1, "direct_api")), 2)
    assert timed_out.value.status == 503
    assert scheduler.position("late") is None
    assert scheduler.snapshot()["queue_length"] == 0
    scheduler.release(holder)
    assert scheduler.snapshot()["active_requests"] == 0


@pytest.mark.costly  # waits out real deadlines
async def test_each_waiting_request_times_out_on_its_own_deadline(client):
    scheduler = scheduler_for(client, 1, queue_timeout=1.0)
    await scheduler.acquire(Ticket("holder", 1, "direct_api"))
    tasks = await queue_up(scheduler, [Ticket("first", 1, "direct_api"), Ticket("leaves", 1, "direct_api")])
    await asyncio.sleep(0.5)
    tasks |= await queue_up(scheduler, [Ticket("second", 1, "direct_api")])
    tasks.pop("leaves").cancel()
    await asyncio.sleep(0.7)  # first is past its deadline (1.0 s), second (1.5 s) is not
    assert isinstance(tasks["first"].exception(), QueueTimeout)
    assert not tasks["second"].done() and scheduler.position("second") == 1
    with pytest.raises(QueueTimeout):
        await asyncio.wait_for(tasks["second"], 2)


async def test_a_cancelled_waiting_task_leaves_the_queue_at_once_and_is_never_granted(client):
    scheduler = scheduler_for(client, 1)
    holder = await scheduler.acquire(Ticket("holder", 1, "direct_api"))
    tasks = await queue_up(scheduler, [Ticket("gone", 1, "web_chat"), Ticket("stays", 3, "web_chat")])
    assert scheduler.position("gone") == 1 and scheduler.position("stays") == 2
    tasks.pop("gone").cancel()
    await settle()
    assert scheduler.position("gone") is None
    assert scheduler.position("stays") == 1
    assert scheduler.snapshot()["queue_length"] == 1
    assert [t.request_id for t in scheduler.waiting()] == ["stays"]
    assert await drain(scheduler, holder, tasks) == ["stays"]


async def test_a_grant_racing_a_cancellation_gives_the_slot_back(client):
    scheduler = scheduler_for(client, 1)
    holder = await scheduler.acquire(Ticket("holder", 1, "direct_api"))
    tasks = await queue_up(scheduler, [Ticket("racer", 1, "direct_api"), Ticket("next", 2, "custom_app")])
    scheduler.release(holder)  # grants "racer" …
    tasks["racer"].cancel()  # … whose client leaves before its task runs again
    await settle()
    assert tasks["racer"].cancelled()
    assert tasks["next"].done(), "the slot the racer never used went to the next ticket"
    grant = tasks["next"].result()
    assert grant.backend.in_use == 1
    scheduler.release(grant)
    assert grant.backend.in_use == 0


async def test_cancel_makes_acquire_raise_the_given_error(client):
    scheduler = scheduler_for(client, 1)
    holder = await scheduler.acquire(Ticket("holder", 1, "direct_api"))
    tasks = await queue_up(scheduler, [Ticket("revoked", 2, "custom_app")])
    assert scheduler.cancel("revoked", Revoked("the API key was revoked", status=403)) is True
    with pytest.raises(Revoked) as raised:
        await tasks["revoked"]
    assert raised.value.status == 403 and raised.value.message == "the API key was revoked"
    assert scheduler.cancel("revoked", Revoked("again")) is False
    assert scheduler.cancel("never-queued", Revoked("x")) is False
    assert scheduler.snapshot()["queue_length"] == 0
    scheduler.release(holder)
    assert holder.backend.in_use == 0


async def test_each_backend_runs_as_many_requests_as_it_has_slots(client):
    scheduler = scheduler_for(client, 2, 1)
    grants = [await scheduler.acquire(Ticket(f"r{i}", 1, "direct_api")) for i in range(3)]
    # The backend with the most free slots is preferred: b0 (2 free), b0 (tie, listed first), b1.
    assert [g.backend.url for g in grants] == ["http://b0:11434", "http://b0:11434", "http://b1:11434"]
    tasks = await queue_up(scheduler, [Ticket("waits", 1, "direct_api")])
    assert not tasks["waits"].done()
    scheduler.release(grants[2])
    await settle()
    assert tasks["waits"].result().backend.url == "http://b1:11434"


async def test_a_request_goes_to_a_backend_that_has_its_model(client):
    scheduler = scheduler_for(client, 1, 1)
    b0, b1 = scheduler.pool.backends
    b0.models, b1.models = frozenset({"llama3.2:latest"}), frozenset({"qwen3:8b"})
    assert (await scheduler.acquire(Ticket("q", 1, "direct_api", "qwen3:8b"))).backend is b1
    assert (await scheduler.acquire(Ticket("l", 1, "direct_api", "llama3.2"))).backend is b0


async def test_an_unlisted_model_goes_to_any_healthy_backend_so_ollama_can_answer_404(client):
    scheduler = scheduler_for(client, 1)
    scheduler.pool.backends[0].models = frozenset({"llama3.2:latest"})
    grant = await scheduler.acquire(Ticket("r", 1, "direct_api", "no-such-model"))
    assert grant.backend is scheduler.pool.backends[0]


async def test_a_model_no_backend_can_take_now_does_not_block_other_models(client):
    scheduler = scheduler_for(client, 1, 1)
    b0, b1 = scheduler.pool.backends
    b0.models, b1.models = frozenset({"big:latest"}), frozenset({"small:latest"})
    big = await scheduler.acquire(Ticket("big-1", 1, "direct_api", "big"))
    small = await scheduler.acquire(Ticket("small-1", 1, "direct_api", "small"))
    tasks = await queue_up(
        scheduler, [Ticket("big-2", 0, "direct_api", "big"), Ticket("small-2", 3, "web_chat", "small")]
    )
    scheduler.release(small)
    await settle()
    assert tasks["small-2"].done() and not tasks["big-2"].done()
    scheduler.release(big)
    await settle()
    assert tasks["big-2"].result().backend is b0


async def test_an_unhealthy_backend_is_skipped_and_its_queue_moves_when_it_rejoins():
    hosts: dict[str, list[str] | None] = {"b0": [], "b1": []}
    async with httpx.AsyncClient(transport=httpx.MockTransport(tags_handler(hosts))) as client:
        scheduler = scheduler_for(client, 1, 1)
        b0, b1 = scheduler.pool.backends
        scheduler.pool.mark_failed(b0, "ConnectError")
        first = await scheduler.acquire(Ticket("first", 1, "direct_api"))
        assert first.backend is b1
        tasks = await queue_up(scheduler, [Ticket("second", 1, "direct_api")])
        assert not tasks["second"].done(), "the unhealthy backend's free slot is not used"
        await scheduler.pool.check_all()  # b0 answers again
        await settle()
        assert tasks["second"].result().backend is b0


async def test_no_healthy_backend_raises_no_backend_with_retry_after(client):
    scheduler = scheduler_for(client, 1)
    scheduler.pool.mark_failed(scheduler.pool.backends[0], "ConnectError")
    with pytest.raises(NoBackend) as refused:
        await scheduler.acquire(Ticket("r", 1, "direct_api", "llama3.2"))
    assert refused.value.status == 503 and refused.value.retry_after >= 1


async def test_release_is_idempotent(client):
    scheduler = scheduler_for(client, 2)
    a = await scheduler.acquire(Ticket("a", 1, "direct_api"))
    b = await scheduler.acquire(Ticket("b", 1, "direct_api"))
    scheduler.release(a)
    scheduler.release(a)
    assert b.backend.in_use == 1
    assert scheduler.snapshot()["active_requests"] == 1


async def test_snapshot_counts_waiting_and_active_requests_by_source(client):
    clock = FakeClock()
    scheduler = scheduler_for(client, 1, 1, clock=clock)
    await scheduler.acquire(Ticket("a", 1, "direct_api"))
    await scheduler.acquire(Ticket("b", 3, "web_chat"))
    await queue_up(scheduler, [Ticket("c", 2, "custom_app")])
    clock.advance(7.5)
    await queue_up(scheduler, [Ticket("d", 3, "web_chat"), Ticket("e", 3, "web_chat")])
    clock.advance(2.5)
    snap = scheduler.snapshot()
    assert snap["queue_length"] == 3
    assert snap["queue_by_source"] == {"direct_api": 0, "custom_app": 1, "web_chat": 2}
    assert snap["active_requests"] == 2
    assert snap["active_by_source"] == {"direct_api": 1, "custom_app": 0, "web_chat": 1}
    assert snap["oldest_wait"] == pytest.approx(10.0)
    assert [(b["in_use"], b["slots"], b["healthy"]) for b in snap["backends"]] == [(1, 1, True), (1, 1, True)]
    scheduler.cancel("c", SchedulerError("test"))
    assert scheduler.snapshot()["oldest_wait"] == pytest.approx(2.5)


async def test_position_follows_the_dispatch_order(client):
    scheduler = scheduler_for(client, 1)
    await scheduler.acquire(Ticket("holder", 1, "direct_api"))
    await queue_up(scheduler, [Ticket("w", 3, "web_chat"), Ticket("k", 2, "custom_app")])
    await queue_up(scheduler, [Ticket("d", 1, "direct_api")])
    assert [scheduler.position(r) for r in ("d", "k", "w", "holder")] == [1, 2, 3, None]


async def test_a_request_id_cannot_be_queued_twice(client):
    scheduler = scheduler_for(client, 1)
    await scheduler.acquire(Ticket("holder", 1, "direct_api"))
    await queue_up(scheduler, [Ticket("dup", 1, "direct_api")])
    with pytest.raises(ValueError):
        await scheduler.acquire(Ticket("dup", 1, "direct_api"))


async def test_close_fails_every_waiting_request(client):
    scheduler = scheduler_for(client, 1)
    await scheduler.acquire(Ticket("holder", 1, "direct_api"))
    tasks = await queue_up(scheduler, [Ticket("w", 3, "web_chat")])
    await scheduler.close()
    with pytest.raises(SchedulerError) as failed:
        await tasks["w"]
    assert failed.value.status == 503
    assert scheduler.snapshot()["queue_length"] == 0
