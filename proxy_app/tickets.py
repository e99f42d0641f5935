"""What both schedulers share: tickets, grants, their errors, and the service-time estimates.

docs/contract.md §5, §7 and §8. ``proxy_app.scheduler`` re-exports all of it, so callers
import from there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from common.policies import normalise_model_name
from proxy_app.backends import BackendState

SOURCES = ("direct_api", "custom_app", "web_chat")
ADMIN_CANCEL = "cancelled by an administrator"


class SchedulerError(Exception):
    """A request cannot be (or stay) queued; ``status`` and ``retry_after`` shape the answer."""

    status: int = 503

    def __init__(self, message: str, *, status: int | None = None, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.retry_after = retry_after


class QueueFull(SchedulerError):
    """MAX_QUEUE requests are already waiting and none ranks behind the newcomer (503 + Retry-After)."""


class Evicted(SchedulerError):
    """A full queue admitted a better newcomer in this waiting request's place (503 + Retry-After)."""


class IdentityQueueFull(SchedulerError):
    """The identity already has ``max_queued`` requests waiting (429 + Retry-After)."""

    status = 429


class QueueTimeout(SchedulerError):
    """The request waited longer than QUEUE_TIMEOUT (503)."""


class NoBackend(SchedulerError):
    """No healthy backend serves the model (503 with Retry-After)."""


class Revoked(SchedulerError):
    """The credential behind a queued request was revoked while it waited (401/403)."""

    status = 401


class AdminCancelled(SchedulerError):
    """An administrator cancelled the waiting request (503 ``cancelled by an administrator``)."""


@dataclass(frozen=True, slots=True)
class LimitSubject:
    """Whose queue limits bound a request: a policy holder (a key, entry or user) and its limits.

    docs/contract.md §16 "A shared key's limits hold for the key": a request behind a shared key is
    its end user's for fair share, and the key's ``max_queued`` / ``max_concurrent`` bound the key
    as a whole. A request carries every subject whose limits apply (all must allow).
    """

    who: str  # "key:3", "ip:7", "user:12"
    max_queued: int | None = None  # this subject's requests waiting at once (§7)
    max_concurrent: int | None = None  # this subject's requests holding a slot at once (§7)


@dataclass
class Ticket:
    """A request asking for a slot."""

    request_id: str
    priority: int | float  # base priority: lower is served first
    source: str  # "direct_api" | "custom_app" | "web_chat"
    model: str | None = None
    who: str = ""  # identity for fair share: "key:3", "ip:7", "user:12", "key:3/end-user:a"
    max_queued: int | None = None  # ``who``'s own limits, when ``limits`` is empty (§7)
    max_concurrent: int | None = None
    endpoint: str | None = None  # shown in the queue view (§8)
    principal: Any = None
    limits: tuple[LimitSubject, ...] = ()  # whose limits bound it; empty: ``who`` with the two above
    max_parallel: int | None = None  # the model's profile: its requests holding slots at once (§12)
    conversation: str | None = None  # the conversation key: its turns stay on one backend (§12)

    @property
    def subjects(self) -> tuple[LimitSubject, ...]:
        """The limit subjects of this ticket (none for a ticket without an identity)."""
        if self.limits:
            return self.limits
        return (LimitSubject(self.who, self.max_queued, self.max_concurrent),) if self.who else ()


@dataclass(eq=False)
class Grant:
    """A slot on ``backend`` held for ``ticket`` until released.

    An administrator may cancel it while it streams: ``on_cancel(callback)`` registers
    ``callback(reason)``, called once (at once if the cancel came first); the request
    then closes its upstream and ends its stream with an in-band error, and releases.
    """

    ticket: Ticket
    backend: BackendState
    waited: float  # seconds spent queued
    points: float = 0.0  # fair-share points it carried
    effective: float = 0.0  # its effective priority when granted
    released: bool = field(default=False, init=False, repr=False)
    granted_at: float = field(default=0.0, init=False, repr=False)
    cancel_reason: str | None = field(default=None, init=False, repr=False)
    _listeners: list[Callable[[str], None]] = field(default_factory=list, init=False, repr=False)

    def on_cancel(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(reason)`` when an administrator cancels this active request."""
        if self.cancel_reason is not None:
            callback(self.cancel_reason)
        else:
            self._listeners.append(callback)

    def cancel(self, reason: str) -> bool:
        """Signal the cancellation to the listeners (once); False if released or already cancelled."""
        if self.released or self.cancel_reason is not None:
            return False
        self.cancel_reason = reason
        listeners, self._listeners = self._listeners, []
        for callback in listeners:
            callback(reason)
        return True


class Scheduler(Protocol):
    """What the gateway needs from a scheduler, in-process or shared through Redis."""

    async def acquire(self, ticket: Ticket) -> Grant: ...
    def release(self, grant: Grant) -> None: ...
    def cancel(self, request_id: str, error: SchedulerError) -> bool: ...
    async def cancel_request(self, request_id: str, reason: str = ADMIN_CANCEL) -> bool: ...
    def position(self, request_id: str) -> int | None: ...
    def eta(self, request_id: str) -> int | None: ...
    async def queue_view(self) -> list[dict]: ...
    def snapshot(self) -> dict: ...
    def waiting(self) -> list[Ticket]: ...
    async def start(self) -> None: ...
    async def close(self) -> None: ...


def empty_by_source() -> dict[str, int]:
    """A per-source counter with every known source present."""
    return dict.fromkeys(SOURCES, 0)


def retry_estimate(mean_hold: float, waiting: int, slots: int) -> int:
    """Retry-After for a full queue: seconds to drain it at the mean hold time, 1-60."""
    return min(max(math.ceil(mean_hold * waiting / max(slots, 1)), 1), 60)


SERVICE_WEIGHT = 0.3  # weight of the newest service time in the moving average


class ServiceTimes:
    """Recent service times per (model, backend): a moving average, for queue ETAs."""

    def __init__(self) -> None:
        self.mean: dict[tuple[str, str], float] = {}

    def record(self, group: str, url: str, seconds: float) -> None:
        """One request of model ``group`` held a slot on ``url`` for ``seconds``."""
        old = self.mean.get((group, url))
        self.mean[(group, url)] = seconds if old is None else old + SERVICE_WEIGHT * (seconds - old)

    def eta(self, group: str, backends: list[BackendState], position: int) -> int | None:
        """Whole seconds until a ticket at ``position`` (1-based) gets a slot; None if unknown."""
        times = [self.mean[(group, b.url)] for b in backends if (group, b.url) in self.mean]
        if not times or position < 1:
            return None
        slots = sum(b.slots for b in backends) or 1
        return math.ceil(position * (sum(times) / len(times)) / slots)


def group_of(model: str | None) -> str:
    """Which model group a ticket waits in: the canonical model name, "" for no model."""
    return normalise_model_name(model) if model else ""


def queue_row(
    ticket: Ticket,
    state: str,
    effective: float,
    waited: float,
    position: int | None,
    eta: int | None,
    backend: str | None,
) -> dict:
    """One line of the queue view (docs/contract.md §8)."""
    return {
        "request_id": ticket.request_id,
        "state": state,
        "source": ticket.source,
        "who": ticket.who,
        "model": ticket.model,
        "endpoint": ticket.endpoint,
        "base_priority": ticket.priority,
        "effective_priority": round(effective, 6),
        "waited_s": round(waited, 3),
        "position": position,
        "eta_s": eta,
        "backend": backend,
    }
