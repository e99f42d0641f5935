"""Scheduler test helpers: settings, a fake clock, backends' /api/tags, queueing tickets, draining."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from common.settings import Backend, Settings
from proxy_app.backends import BackendPool
from proxy_app.scheduler import (
    LocalScheduler,
    Ticket,
)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_settings(**overrides) -> Settings:
    """Settings for a scheduler only: no database is touched; model affinity off unless asked for."""
    overrides.setdefault("model_affinity", 0.0)
    return Settings(
        database_url="sqlite://", secret_key="test", instance_dir=Path("/nonexistent"), **overrides
    )


def tags_handler(
    models_by_host: dict[str, list[str] | None], loaded_by_host: dict[str, list[str]] | None = None
):
    """An httpx handler answering /api/tags (and /api/ps: nothing loaded unless given) per host;
    a host mapped to None is down."""

    def handle(request: httpx.Request) -> httpx.Response:
        models = models_by_host.get(request.url.host)
        if models is None:
            raise httpx.ConnectError("connection refused", request=request)
        if request.url.path == "/api/ps":
            models = (loaded_by_host or {}).get(request.url.host, [])
        return httpx.Response(200, json={"models": [{"name": m, "model": m} for m in models]})

    return handle


def scheduler_for(client, *slots: int, clock=None, **overrides) -> LocalScheduler:
    """A scheduler over backends b0, b1… with the given slot counts."""
    backends = [Backend(f"http://b{i}:11434", n) for i, n in enumerate(slots or (1,))]
    pool = BackendPool(backends, client)
    return LocalScheduler(make_settings(**overrides), pool, clock=clock or FakeClock())


async def settle() -> None:
    """Let every ready task run."""
    for _ in range(5):
        await asyncio.sleep(0)


async def queue_up(scheduler, tickets: list[Ticket]) -> dict[str, asyncio.Task]:
    """Start acquire() for each ticket, in order, and let them reach the queue."""
    tasks = {}
    for ticket in tickets:
        tasks[ticket.request_id] = asyncio.create_task(scheduler.acquire(ticket))
        await settle()
    return tasks


async def drain(scheduler, first_grant, tasks: dict[str, asyncio.Task]) -> list[str]:
    """Release slot after slot and return the order the waiting tickets got it."""
    order, grant = [], first_grant
    while True:
        scheduler.release(grant)
        await settle()
        done = [rid for rid, task in tasks.items() if task.done() and rid not in order]
        if not done:
            return order
        assert len(done) == 1, f"one release granted several tickets: {done}"
        order.append(done[0])
        grant = tasks[done[0]].result()
