"""max_parallel and sticky conversations in the in-process scheduler (docs/contract.md §12)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from proxy_app.scheduler import Ticket
from tests.proxy.scheduling import queue_up, scheduler_for, settle, tags_handler


@pytest.fixture
async def client():
    async with httpx.AsyncClient(transport=httpx.MockTransport(tags_handler({}))) as c:
        yield c


def big(rid: str, cap: int | None = 1) -> Ticket:
    return Ticket(rid, 1, "direct_api", "big", max_parallel=cap)


def turn(rid: str, conversation: str = "chat-1", model: str = "m") -> Ticket:
    return Ticket(rid, 1, "direct_api", model, conversation=conversation)


async def test_max_parallel_holds_a_model_to_its_cap_while_other_models_go_past(client):
    scheduler = scheduler_for(client, 1, 1, 1, fair_share=0.0)
    first = await scheduler.acquire(big("big1"))
    tasks = await queue_up(scheduler, [big("big2"), big("big3"), Ticket("small", 2, "custom_app", "small")])
    assert tasks["small"].done() and not tasks["big2"].done()  # two backends free, the cap is 1
    assert scheduler.position("big2") == 1 and scheduler.position("big3") == 2
    scheduler.release(first)
    await settle()
    assert tasks["big2"].done() and not tasks["big3"].done()
    scheduler.release(tasks["big2"].result())
    await settle()
    assert tasks["big3"].done()


async def test_a_raised_cap_lets_the_waiting_go_at_once(client):
    scheduler = scheduler_for(client, 1, 1, fair_share=0.0)
    await scheduler.acquire(big("big1"))
    tasks = await queue_up(scheduler, [big("big2")])
    assert not tasks["big2"].done()
    tasks |= await queue_up(scheduler, [big("big3", cap=None)])  # the profile lost its cap
    assert tasks["big2"].done() and not tasks["big3"].done()  # one backend was free: big2 first


async def test_the_cap_counts_a_model_by_its_canonical_name(client):
    scheduler = scheduler_for(client, 1, 1, fair_share=0.0)
    await scheduler.acquire(Ticket("a", 1, "direct_api", "Big:latest", max_parallel=1))
    tasks = await queue_up(scheduler, [big("b")])
    assert not tasks["b"].done()


@pytest.mark.parametrize(("delay", "sticks"), [(5.0, True), (0.0, False)])
async def test_a_turn_goes_back_to_the_backend_of_its_conversation(client, delay, sticks):
    scheduler = scheduler_for(client, 1, 2, clock=time.monotonic, sticky_max_delay=delay)
    others = [await scheduler.acquire(Ticket(f"x{i}", 1, "direct_api", "m")) for i in range(2)]
    first = await scheduler.acquire(turn("t1"))  # b1 is full: the conversation starts on b0
    home = first.backend
    for grant in (*others, first):
        scheduler.release(grant)
    for number in range(2, 6):  # b1 has the model too and more free slots: it would win
        grant = await scheduler.acquire(turn(f"t{number}"))
        assert (grant.backend is home) is sticks
        scheduler.release(grant)


async def test_a_turn_waits_for_its_busy_home_up_to_the_delay_then_goes_anywhere(client):
    scheduler = scheduler_for(client, 1, 1, clock=time.monotonic, sticky_max_delay=0.3)
    first = await scheduler.acquire(turn("t1"))
    home = first.backend
    scheduler.release(first)
    # Two other requests fill both backends; the one not at home then leaves.
    a = await scheduler.acquire(Ticket("x1", 1, "direct_api", "m"))
    b = await scheduler.acquire(Ticket("x2", 1, "direct_api", "m"))
    scheduler.release(b if a.backend is home else a)
    started = time.monotonic()
    tasks = await queue_up(scheduler, [turn("t2")])
    await asyncio.sleep(0.1)
    assert not tasks["t2"].done()  # the other backend is free, but the home is worth waiting for
    grant = await tasks["t2"]
    assert grant.backend is not home and 0.25 <= time.monotonic() - started < 1.0


async def test_a_turn_takes_its_home_as_soon_as_it_frees_within_the_delay(client):
    scheduler = scheduler_for(client, 1, 1, clock=time.monotonic, sticky_max_delay=5.0)
    first = await scheduler.acquire(turn("t1"))
    home = first.backend
    tasks = await queue_up(scheduler, [turn("t2")])
    assert not tasks["t2"].done()
    scheduler.release(first)
    await settle()
    assert tasks["t2"].done() and tasks["t2"].result().backend is home


async def test_sticky_max_delay_zero_goes_wherever_a_slot_is_free(client):
    scheduler = scheduler_for(client, 1, 1, clock=time.monotonic, sticky_max_delay=0.0)
    first = await scheduler.acquire(turn("t1"))
    second = await scheduler.acquire(turn("t2"))
    assert second.backend is not first.backend


async def test_a_home_that_is_down_or_the_only_backend_does_not_hold_a_turn(client):
    scheduler = scheduler_for(client, 1, 1, clock=time.monotonic, sticky_max_delay=5.0)
    first = await scheduler.acquire(turn("t1"))
    scheduler.pool.mark_failed(first.backend, "down")
    second = await scheduler.acquire(turn("t2"))  # not the home: it is down
    assert second.backend is not first.backend
    lone = scheduler_for(client, 2, clock=time.monotonic, sticky_max_delay=5.0)
    one = await lone.acquire(turn("u1"))
    two = await lone.acquire(turn("u2"))  # one backend: nothing to stick to, the free slot is used
    assert one.backend is two.backend
