"""A shared key's limits hold for the key (docs/contract.md §16), in both schedulers.

The attack (issue 19): a key with ``end_user_header`` and ``max_queued`` 5 sent 30 requests, each
naming another end user, and all 30 were queued. Each end user is an identity for fair share, but
the key's ``max_queued`` and ``max_concurrent`` bound the key as a whole.
"""

from __future__ import annotations

import asyncio

import pytest

from proxy_app.scheduler import IdentityQueueFull, LimitSubject, Ticket
from tests.conftest import require_service
from tests.proxy.redis_cluster import Cluster, enqueue
from tests.proxy.scheduling import queue_up, scheduler_for, settle
from tests.waiting import await_until


def behind(key: str, person: str, rid: str, *, max_queued=None, max_concurrent=None, priority=2) -> Ticket:
    """A ticket of ``person`` behind the shared ``key``, bound by the key's limits."""
    return Ticket(
        rid,
        priority,
        "custom_app",
        who=f"{key}/end-user:{person}",
        limits=(LimitSubject(key, max_queued, max_concurrent),),
    )


async def test_rotating_end_users_cannot_pass_the_key_s_max_queued(client):
    scheduler = scheduler_for(client, 1, fair_share=0.5, aging_per_minute=0.0)
    holder = await scheduler.acquire(Ticket("holder", 1, "direct_api", who="ip:1"))
    tasks = await queue_up(scheduler, [behind("key:1", f"u{i}", f"r{i}", max_queued=5) for i in range(5)])
    refused = 0
    for i in range(5, 30):
        with pytest.raises(IdentityQueueFull) as error:
            await scheduler.acquire(behind("key:1", f"u{i}", f"r{i}", max_queued=5))
        refused += error.value.status == 429 and error.value.retry_after >= 1
    assert refused == 25 and scheduler.snapshot()["queue_length"] == 5
    # Another key is not bound by key:1's limit.
    other = await queue_up(scheduler, [behind("key:2", "u0", "other", max_queued=5)])
    assert scheduler.snapshot()["queue_length"] == 6
    # Fair share still goes per end user: every first request of a person carries no points.
    rows = {row["request_id"]: row for row in await scheduler.queue_view()}
    assert {rows[f"r{i}"]["effective_priority"] for i in range(5)} == {2}
    scheduler.release(holder)
    for task in [*tasks.values(), *other.values()]:
        scheduler.release(await asyncio.wait_for(task, 1))


async def test_the_key_s_max_concurrent_holds_for_all_its_end_users(client):
    scheduler = scheduler_for(client, 3, fair_share=0.0, aging_per_minute=0.0)
    first = await scheduler.acquire(behind("key:1", "a", "a0", max_concurrent=1))
    tasks = await queue_up(scheduler, [behind("key:1", "b", "b0", max_concurrent=1)])
    await settle()
    assert not tasks["b0"].done()  # two slots free, but the key holds its one
    other = await scheduler.acquire(Ticket("x", 3, "web_chat", who="user:1"))  # others go past
    scheduler.release(first)
    grant = await asyncio.wait_for(tasks["b0"], 1)
    assert grant.ticket.who == "key:1/end-user:b"
    scheduler.release(grant)
    scheduler.release(other)


@pytest.mark.scaleout
async def test_rotating_end_users_cannot_pass_the_key_s_limits_across_instances():
    cluster = Cluster(require_service("SEADRAGON_TEST_REDIS_URL"))
    try:
        a = await cluster.add(2, fair_share=0.0, aging_per_minute=0.0)
        b = await cluster.add(2, fair_share=0.0, aging_per_minute=0.0)
        limit = {"max_queued": 2, "max_concurrent": 1}
        first = await a.acquire(behind("key:1", "a", "a0", **limit))
        waiting = [
            await enqueue(inst, behind("key:1", f"u{i}", f"w{i}", **limit)) for i, inst in ((0, b), (1, a))
        ]
        await asyncio.sleep(0.1)
        assert not any(task.done() for task in waiting)  # a slot is free, the key holds its one
        for i in range(2, 8):
            with pytest.raises(IdentityQueueFull):
                await (a if i % 2 else b).acquire(behind("key:1", f"u{i}", f"w{i}", **limit))
        other = await b.acquire(Ticket("x", 3, "web_chat", who="user:1"))
        a.release(first)
        await await_until(lambda: any(task.done() for task in waiting))
        done = next(task for task in waiting if task.done())
        owner = b if done is waiting[0] else a
        owner.release(done.result())
        rest = next(task for task in waiting if task is not done)
        (a if rest is waiting[1] else b).release(await asyncio.wait_for(rest, 3))
        b.release(other)
    finally:
        await cluster.close()
