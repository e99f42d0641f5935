"""The scheduler against a reference model: a sorted list, over random operation sequences.

Hypothesis draws sequences of enqueue / release / cancel / client-leaves / clock
advance. After every step the grants so far, the waiting order (``position``)
and the queue length must equal the reference exactly. Rates and clock steps
are dyadic (0.25/min, 15 s) so float keys and the exact Fraction keys of the
reference agree, ties included.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from fractions import Fraction

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.settings import Backend
from proxy_app.backends import BackendPool
from proxy_app.scheduler import LocalScheduler, QueueFull, Revoked, Ticket
from tests.proxy.test_scheduler import FakeClock, make_settings

SOURCES = {0: "direct_api", 1: "direct_api", 2: "custom_app", 3: "web_chat", 5: "custom_app"}

enqueue = st.tuples(st.just("enqueue"), st.sampled_from(sorted(SOURCES)))
operations = st.lists(
    st.one_of(
        enqueue,
        enqueue,
        enqueue,  # three times as likely as any other step, so queues build up
        st.tuples(st.just("leave_then_release"), st.integers(0, 7)),
        st.tuples(st.just("release"), st.integers(0, 7)),
        st.tuples(st.just("release_again"), st.integers(0, 7)),
        st.tuples(st.just("leave"), st.integers(0, 7)),
        st.tuples(st.just("revoke"), st.integers(0, 7)),
        st.tuples(st.just("release_then_leave"), st.integers(0, 7)),
        st.tuples(st.just("advance"), st.integers(1, 240)),
    ),
    min_size=15,
    max_size=80,
)


@dataclass
class Reference:
    """The contract, written the slow obvious way."""

    slots: int
    rate: Fraction
    max_queue: int
    now: Fraction = Fraction(0)
    waiting: list[tuple[Fraction, int, str]] = field(default_factory=list)  # kept sorted
    held: list[str] = field(default_factory=list)
    granted: list[str] = field(default_factory=list)  # grant order of tickets that got to use it
    released: list[str] = field(default_factory=list)
    seq: int = 0

    def enqueue(self, rid: str, base: int) -> str:
        """'granted', 'full' or 'queued'."""
        if len(self.held) < self.slots:
            self.held.append(rid)
            self.granted.append(rid)
            return "granted"
        if len(self.waiting) >= self.max_queue:
            return "full"
        self.seq += 1
        self.waiting.append((base + self.rate * self.now / 60, self.seq, rid))
        self.waiting.sort()
        return "queued"

    def release(self, rid: str) -> str | None:
        """Free ``rid``'s slot; the best waiting ticket (returned) takes it."""
        self.held.remove(rid)
        if not self.waiting:
            return None
        nxt = self.waiting.pop(0)[2]
        self.held.append(nxt)
        return nxt

    def remove(self, rid: str) -> None:
        """A waiting ticket leaves."""
        self.waiting = [entry for entry in self.waiting if entry[2] != rid]


async def run_local(slots: int, rate: Fraction, max_queue: int, ops: list[tuple[str, int]]) -> None:
    """Apply ``ops`` to a LocalScheduler and to the reference, comparing after each step."""
    clock = FakeClock()
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500))) as client:
        pool = BackendPool([Backend("http://gpu:11434", slots)], client)
        config = make_settings(aging_per_minute=float(rate), max_queue=max_queue)
        scheduler = LocalScheduler(config, pool, clock=clock)
        ref = Reference(slots, rate, max_queue)
        tasks: dict[str, asyncio.Task] = {}
        grants: dict = {}
        actual_order: list[str] = []

        async def settle() -> None:
            for _ in range(4):
                await asyncio.sleep(0)
            for rid, task in tasks.items():
                if rid not in grants and task.done() and not task.cancelled() and task.exception() is None:
                    grants[rid] = task.result()
                    actual_order.append(rid)

        for number, (op, arg) in enumerate(ops):
            if op == "enqueue":
                rid = f"r{number}"
                expected = ref.enqueue(rid, arg)
                tasks[rid] = asyncio.create_task(scheduler.acquire(Ticket(rid, arg, SOURCES[arg])))
                await settle()
                if expected == "full":
                    assert isinstance(tasks[rid].exception(), QueueFull)
            elif op in ("release", "release_then_leave") and ref.held:
                rid = ref.held[arg % len(ref.held)]
                nxt = ref.release(rid)
                ref.released.append(rid)
                scheduler.release(grants[rid])
                if nxt is not None and op == "release_then_leave":
                    tasks[nxt].cancel()  # granted, but its client leaves before its task runs
                    nxt = ref.release(nxt)  # so the slot goes on to the next in line
                if nxt is not None:
                    ref.granted.append(nxt)
            elif op == "leave_then_release" and ref.waiting:
                # The client leaves and, before its task runs again, a slot frees.
                rid = ref.waiting[arg % len(ref.waiting)][2]
                ref.remove(rid)
                tasks[rid].cancel()
                held = ref.held[arg % len(ref.held)]
                nxt = ref.release(held)
                ref.released.append(held)
                scheduler.release(grants[held])
                if nxt is not None:
                    ref.granted.append(nxt)
            elif op == "release_again" and ref.released:
                scheduler.release(grants[ref.released[arg % len(ref.released)]])
            elif op in ("leave", "revoke") and ref.waiting:
                rid = ref.waiting[arg % len(ref.waiting)][2]
                ref.remove(rid)
                if op == "leave":
                    tasks[rid].cancel()
                else:
                    assert scheduler.cancel(rid, Revoked("revoked"))
            elif op == "advance":
                clock.advance(15 * arg)
                ref.now += 15 * arg
            await settle()
            assert actual_order == ref.granted
            positions = [scheduler.position(rid) for _, _, rid in ref.waiting]
            assert positions == list(range(1, len(ref.waiting) + 1))
            snap = scheduler.snapshot()
            assert snap["queue_length"] == len(ref.waiting)
            assert snap["active_requests"] == len(ref.held) == pool.backends[0].in_use
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)


@pytest.mark.slow  # 400 generated schedules
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    slots=st.integers(1, 2),
    rate=st.sampled_from([Fraction(0), Fraction(1, 4), Fraction(1, 2), Fraction(1), Fraction(2)]),
    max_queue=st.sampled_from([3, 1000]),
    ops=operations,
)
def test_the_grant_order_matches_the_reference_model(slots, rate, max_queue, ops):
    asyncio.run(run_local(slots, rate, max_queue, ops))
