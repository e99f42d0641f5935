"""What the Redis scheduler sends to its Lua script and reads back (proxy_app/scheduler_redis.lua).

Pure functions, so :mod:`proxy_app.scheduler_redis` keeps only the instance's own state:
the config every call carries, and the tick and queue-view replies turned into the
snapshot, the shared service times and the rows of docs/contract.md §8.
"""

from __future__ import annotations

import json
from typing import Any

from common.settings import Settings
from proxy_app.backends import BackendPool
from proxy_app.tickets import ServiceTimes, Ticket, empty_by_source, queue_row


def text(value: Any) -> str:
    """A Redis reply item as str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def pairs(flat: list) -> list[tuple[str, str]]:
    """An HGETALL reply as (field, value) pairs."""
    items = [text(x) for x in flat]
    return [(items[i], items[i + 1]) for i in range(0, len(items), 2)]


def script_config(pool: BackendPool, settings: Settings) -> str:
    """Healthy backends, their slots, which serve and have loaded each model; the rules' settings."""
    healthy = [b for b in pool.backends if b.healthy]
    known = {m for b in healthy if b.models is not None for m in b.models}
    routes = {m: [b.url for b in pool.candidates(m)] for m in known}
    routes[""] = [b.url for b in healthy]
    default = [b.url for b in healthy if b.models is None] or routes[""]
    config = {
        "backends": {b.url: b.slots for b in healthy},
        "routes": routes,
        "default": default,
        "loaded": {b.url: sorted(b.loaded) for b in healthy if b.loaded},
        "capacity": {b.url: b.capacity for b in healthy},
        "fair": settings.fair_share,
        "fair_seconds": settings.fair_share_seconds,
        "fair_window": settings.fair_share_window,
        "slack": settings.model_affinity,
        "max_delay": settings.affinity_max_delay,
        "sticky": settings.sticky_max_delay,
    }
    return json.dumps(config)


class ScriptConfig:
    """:func:`script_config`, encoded again only when something it is made of changed.

    Every script call carries the config; its inputs (each backend's health, slots, models,
    loaded models and capacity; the settings never change) are compared instead, which costs
    a tuple of a few fields per backend rather than the routes and a JSON encoding.
    """

    def __init__(self, pool: BackendPool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings
        self.encodes = 0  # how many times it was encoded (tests, measurements)
        self._inputs: tuple | None = None
        self._text = ""

    def current(self) -> str:
        """The config as of now: the last encoding if nothing it is made of changed."""
        inputs = tuple(
            (b.url, b.healthy, b.slots, b.models, b.loaded, b.capacity) for b in self.pool.backends
        )
        if inputs != self._inputs:
            self._text = script_config(self.pool, self.settings)
            self._inputs = inputs
            self.encodes += 1
        return self._text


def empty_snapshot() -> dict:
    """The shared numbers before the first tick."""
    return {
        "queue_length": 0,
        "queue_by_source": empty_by_source(),
        "active_requests": 0,
        "active_by_source": empty_by_source(),
        "oldest_wait": 0.0,
    }


def tick_snapshot(length: Any, counts: list, oldest: Any, now: Any) -> dict:
    """The shared queue and slot numbers from a tick reply."""
    snap = empty_snapshot()
    for name, n in pairs(counts):
        kind, _, source = name.partition(":")
        if int(n) > 0 and kind in ("queued", "active"):
            snap["queue_by_source" if kind == "queued" else "active_by_source"][source] = int(n)
    snap["queue_length"] = int(length)
    snap["active_requests"] = sum(snap["active_by_source"].values())
    oldest_ms = float(text(oldest))
    snap["oldest_wait"] = max((float(text(now)) - oldest_ms) / 1000, 0.0) if oldest_ms >= 0 else 0.0
    return snap


def load_service_times(service: ServiceTimes, flat: list) -> None:
    """Copy the shared ``svc`` hash (``model\\nurl`` -> mean seconds) into ``service``."""
    for name, mean in pairs(flat):
        group, _, url = name.partition("\n")
        service.mean[(group, url)] = float(mean)


def view_rows(reply: list, pool: BackendPool, settings: Settings, service: ServiceTimes) -> list[dict]:
    """The queue view (§8) from the script's ``view`` reply: waiting in order, then active."""
    rows, now = json.loads(text(reply[0])) or [], float(text(reply[1]))
    rate, out, position = settings.aging_per_minute, [], 0
    for rid, state, who, source, model, endpoint, base, points, enq, waited, url in rows:
        number = float(base)
        ticket = Ticket(rid, int(number) if number.is_integer() else number, source, model or None, who)
        ticket.endpoint = endpoint or None
        if state == "waiting":
            position += 1
            wait = max(now - float(enq), 0.0)
            eta = service.eta(model, pool.candidates(ticket.model), position)
        else:
            wait, eta = float(waited), None
        effective = number + float(points) - rate * wait / 60.0
        waiting = state == "waiting"
        out.append(queue_row(ticket, state, effective, wait, position if waiting else None, eta, url or None))
    return out
