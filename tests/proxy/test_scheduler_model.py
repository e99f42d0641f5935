"""The scheduler against a reference model: a sorted list, over random operation sequences.

Hypothesis draws a configuration (slots, aging rate, MAX_QUEUE, FAIR_SHARE, FAIR_SHARE_SECONDS,
FAIR_SHARE_WINDOW, MODEL_AFFINITY, AFFINITY_MAX_DELAY, each model's max_parallel (§12), each limit
subject's max_queued / max_concurrent) and a sequence of enqueue (priority, identity, model) /
release / cancel / client-leaves / clock-advance steps. Two identities are end users behind
``key:1``: fair share goes per identity, limits per subject (docs/contract.md §16), and fair share
counts each identity's GPU time in the window (§13). After every step the grants so far, the
refusals and evictions, the waiting order (``position``, the queue view) and the queue length must
equal the reference exactly (docs/contract.md §5, §7, §8). Rates, points and clock steps are dyadic
(0.25/min, 0.5, 15 s) so float keys and the exact Fraction keys of the reference agree, ties
included.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.settings import Backend
from proxy_app.backends import BackendPool
from proxy_app.scheduler import (
    Evicted,
    IdentityQueueFull,
    LimitSubject,
    LocalScheduler,
    QueueFull,
    Revoked,
    Ticket,
)
from tests.proxy.scheduler_model import (
    SOURCES,
    Reference,
    configs,
    limits,
    overrides_for,
    step,
    subject_of,
)
from tests.proxy.scheduling import FakeClock, make_settings

operations = st.lists(step, min_size=15, max_size=80)


async def run_local(config: dict, policy: dict, ops: list[tuple]) -> None:
    """Apply ``ops`` to a LocalScheduler and to the reference, comparing after each step."""
    clock = FakeClock()
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500))) as client:
        pool = BackendPool([Backend("http://gpu:11434", config["slots"])], client)
        scheduler = LocalScheduler(make_settings(**overrides_for(config)), pool, clock=clock)
        ref = Reference.of(config)
        tasks: dict[str, asyncio.Task] = {}
        grants: dict = {}
        actual_order: list[str] = []

        def record(task: asyncio.Task) -> None:
            # Tasks finish in the order their grants were made, so this is the grant order.
            if not task.cancelled() and task.exception() is None:
                grants[task.get_name()] = task.result()
                actual_order.append(task.get_name())

        async def settle() -> None:
            for _ in range(4):
                await asyncio.sleep(0)

        for number, op in enumerate(ops):
            if op[0] == "enqueue":
                _, base, who, model = op
                rid = f"r{number}"
                max_queued, max_concurrent = policy.get(subject_of(who), (None, None))
                evicted_before = len(ref.evicted)
                cap = config["caps"][model]
                expected = ref.enqueue(rid, base, who, model, max_queued, max_concurrent, cap)
                bound = (LimitSubject(subject_of(who), max_queued, max_concurrent),) if who else ()
                ticket = Ticket(rid, base, SOURCES[base], model, who, limits=bound)
                ticket.max_parallel = cap
                tasks[rid] = asyncio.create_task(scheduler.acquire(ticket), name=rid)
                tasks[rid].add_done_callback(record)
                await settle()
                if expected == "full":
                    assert isinstance(tasks[rid].exception(), QueueFull)
                elif expected == "identity_full":
                    assert isinstance(tasks[rid].exception(), IdentityQueueFull)
                    assert tasks[rid].exception().status == 429
                else:
                    assert not tasks[rid].done() or expected == "granted"
                for victim in ref.evicted[evicted_before:]:
                    assert isinstance(tasks[victim].exception(), Evicted)
            elif op[0] in ("release", "release_then_leave") and ref.held:
                rid = ref.held[op[1] % len(ref.held)]
                ref.released.append(rid)
                scheduler.release(grants[rid])
                granted = ref.release(rid)
                if granted and op[0] == "release_then_leave":
                    gone = granted[0]
                    tasks[gone].cancel()
                    ref.granted.remove(gone)
                    ref.release(gone)
            elif op[0] == "leave_then_release" and ref.waiting and ref.held:
                # The client leaves and, before its task runs again, a slot frees.
                rid = ref.waiting[op[1] % len(ref.waiting)].rid
                ref.remove(rid)
                tasks[rid].cancel()
                held = ref.held[op[1] % len(ref.held)]
                ref.released.append(held)
                scheduler.release(grants[held])
                ref.release(held)
            elif op[0] == "release_again" and ref.released:
                scheduler.release(grants[ref.released[op[1] % len(ref.released)]])
            elif op[0] in ("leave", "revoke") and ref.waiting:
                rid = ref.waiting[op[1] % len(ref.waiting)].rid
                ref.remove(rid)
                if op[0] == "leave":
                    tasks[rid].cancel()
                else:
                    assert scheduler.cancel(rid, Revoked("revoked"))
                ref.dispatch()  # nothing changes: a departure frees no slot
            elif op[0] == "advance":
                clock.advance(15 * (op[1] % 4 + 1))
                ref.now += 15 * (op[1] % 4 + 1)
            await settle()
            assert actual_order == ref.granted
            positions = [scheduler.position(w.rid) for w in ref.waiting]
            assert positions == list(range(1, len(ref.waiting) + 1))
            view = await scheduler.queue_view()
            assert [row["request_id"] for row in view if row["state"] == "waiting"] == [
                w.rid for w in ref.waiting
            ]
            # Every waiting ticket's points (per request and per GPU time) as the reference gives them.
            effective = [row["effective_priority"] for row in view if row["state"] == "waiting"]
            expected = [float(w.score - ref.rate * ref.now / 60) for w in ref.waiting]
            assert effective == pytest.approx(expected, abs=1e-5)
            assert sorted(row["request_id"] for row in view if row["state"] == "active") == sorted(ref.held)
            snap = scheduler.snapshot()
            assert snap["queue_length"] == len(ref.waiting)
            assert snap["active_requests"] == len(ref.held) == pool.backends[0].in_use
            assert Counter(ref.owner[rid] for rid in ref.held) == Counter(
                row["who"] for row in view if row["state"] == "active"
            )
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)


@pytest.mark.slow  # 400 generated schedules
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=configs, policy=limits, ops=operations)
def test_the_grant_order_matches_the_reference_model(config, policy, ops):
    asyncio.run(run_local(config, policy, ops))
