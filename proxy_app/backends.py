"""The Ollama servers behind the gateway: their slots, health and models.

A background loop asks each backend for ``/api/tags`` every ``HEALTH_INTERVAL``
seconds. A backend that refuses the connection leaves the rotation at once; one
whose check times out or answers an error leaves after ``HEALTH_FAILURES`` such
checks in a row (each given ``HEALTH_TIMEOUT``; the check after a failure comes
within a second), so one check slowed by a busy machine costs nobody a 503; a
backend that has never answered leaves at its first failure. It comes back as
soon as it answers again; the model list it reports routes requests for those models to
it. The same round asks ``/api/ps`` which models are loaded in memory.

Which models a backend holds *now* (what model affinity prefers, docs/contract.md §8)
comes from two sources that disagree for a while after every swap: the models the
gateway dispatched to it, most recent first, and its last ``/api/ps`` answer, which
still lists a model evicted since. A backend holds at most ``capacity`` models (the
most its ``/api/ps`` ever listed at once; 1 until then), so it has loaded a model
when the model is among the ``capacity`` it was given last, or when ``/api/ps``
lists a model the gateway never gave it (loaded before start or by another
client) while fewer than ``capacity`` were given. A stale ``/api/ps`` thus never
outvotes a newer dispatch. :func:`holds` is that rule; the Redis scheduler's
script applies the same one to the dispatches all instances share.
Pure asyncio + httpx, so the scheduler can be tested without Quart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import httpx

from common.policies import normalise_model_name
from common.settings import Backend

log = logging.getLogger(__name__)


# Dispatched models remembered per backend; far more than any GPU holds at once.
RECENT_MODELS = 16


@dataclass(eq=False)
class BackendState:
    """One Ollama server; compared by identity so it can key dicts and sets."""

    url: str
    slots: int
    in_use: int = 0
    # Optimistic until the first health check says otherwise.
    healthy: bool = True
    # Canonical names from /api/tags; None = unknown, assume it serves any model.
    models: frozenset[str] | None = None
    last_error: str | None = None
    # Health checks failed in a row; whether one ever succeeded.
    failed_checks: int = 0
    answered: bool = False
    # Canonical names from its last /api/ps answer (None = unknown).
    loaded: frozenset[str] | None = None
    # The most models /api/ps listed at once: how many it can hold (1 until seen).
    capacity: int = 1
    # Models the gateway gave it, most recent first (at most RECENT_MODELS).
    recent: list[str] = field(default_factory=list)

    @property
    def free(self) -> int:
        """Slots not held right now (never negative)."""
        return max(self.slots - self.in_use, 0)

    def serves(self, model: str | None) -> bool:
        """True if this backend can run ``model`` (``name`` and ``name:latest`` alike)."""
        if model is None or self.models is None:
            return True
        return normalise_model_name(model) in self.models

    def has_loaded(self, model: str | None) -> bool:
        """True if ``model`` is in memory here by :func:`holds` (see the module docstring)."""
        if model is None:
            return False  # a request without a model has nothing to find loaded
        return holds(normalise_model_name(model), self.recent, self.loaded or (), self.capacity)

    def given(self, model: str | None) -> None:
        """Note that a request for ``model`` was just dispatched here ("" or None: no model)."""
        if not model:
            return
        key = normalise_model_name(model)
        if key in self.recent:
            self.recent.remove(key)
        self.recent.insert(0, key)
        del self.recent[RECENT_MODELS:]

    def saw_loaded(self, loaded: frozenset[str] | None) -> None:
        """Record an /api/ps answer (None: it gave none)."""
        self.loaded = loaded
        if loaded:
            self.capacity = max(self.capacity, len(loaded))


def holds(model: str, recent: Sequence[str], listed: Collection[str], capacity: int) -> bool:
    """Whether a backend holds ``model``: among the ``capacity`` it was given last, or
    listed by its /api/ps, never given, while fewer than ``capacity`` were given."""
    top = recent[:capacity]
    if model in top:
        return True
    return len(top) < capacity and model in listed and model not in recent


RECHECK_FIRST = 0.5  # seconds before a backend that failed its check is asked again


class BackendPool:
    """The backends with a periodic health check; listeners hear when capacity grows."""

    def __init__(
        self,
        backends: Sequence[Backend],
        client: httpx.AsyncClient,
        *,
        interval: float = 5.0,
        timeout: float = 3.0,
        failures: int = 1,
    ) -> None:
        self.backends: list[BackendState] = [BackendState(b.url.rstrip("/"), b.slots) for b in backends]
        self.client = client
        self.interval = interval
        # A health check must not hang behind a busy GPU for longer than a round.
        self.timeout = min(timeout, interval)
        self.failures = failures
        self._listeners: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever a backend (re)joins or its model list changes."""
        self._listeners.append(listener)

    async def start(self) -> None:
        """Check every backend now, then keep checking every ``interval`` seconds."""
        if self._task is not None:
            return
        await self.check_all()
        self._task = asyncio.create_task(self._loop(), name="seadragon-backend-health")

    async def close(self) -> None:
        """Stop the health loop (idempotent)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        # A backend that is down is asked again soon (0.5 s, then twice as long each time,
        # up to the interval): one reset connection must not cost a whole interval of 503s.
        retry = RECHECK_FIRST
        while True:
            down = any(not backend.healthy or backend.failed_checks for backend in self.backends)
            await asyncio.sleep(min(retry, self.interval) if down else self.interval)
            retry = retry * 2 if down else RECHECK_FIRST
            try:
                await self.check_all()
            except Exception:  # a bug in one round must not end health checking for good
                log.exception("backend health check failed")

    async def check_all(self) -> None:
        """Ask every backend for its models at once and update their state."""
        changed = await asyncio.gather(*(self._check(backend) for backend in self.backends))
        if any(changed):
            self._notify()

    async def _check(self, backend: BackendState) -> bool:
        """One health check; True if the backend gained capacity or changed models."""
        try:
            response = await self.client.get(backend.url + "/api/tags", timeout=self.timeout)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            # A refused connection (a new one: the transport retries a stale pooled one) is
            # certain; a timeout may be a busy machine and counts towards HEALTH_FAILURES.
            if isinstance(exc, httpx.ConnectError):
                self.mark_failed(backend, error)
            else:
                self._check_failed(backend, error)
            return False
        if response.status_code != 200:
            self._check_failed(backend, f"/api/tags answered {response.status_code}")
            return False
        models = _model_names(response)
        changed = not backend.healthy or models != backend.models
        if not backend.healthy:
            log.warning("backend %s is back", backend.url)
        backend.healthy, backend.models, backend.last_error = True, models, None
        backend.failed_checks, backend.answered = 0, True
        backend.saw_loaded(await self._loaded(backend))
        return changed

    async def _loaded(self, backend: BackendState) -> frozenset[str] | None:
        """The models /api/ps says are in memory; None if it does not say (old Ollama, error)."""
        try:
            response = await self.client.get(backend.url + "/api/ps", timeout=self.timeout)
        except httpx.HTTPError:
            return None
        return _model_names(response) if response.status_code == 200 else None

    def _check_failed(self, backend: BackendState, error: str) -> None:
        backend.failed_checks += 1
        if backend.failed_checks >= self.failures or not backend.answered:
            self.mark_failed(backend, error)
        else:
            log.info(
                "backend %s failed a health check (%d of %d): %s",
                backend.url,
                backend.failed_checks,
                self.failures,
                error,
            )

    def mark_failed(self, backend: BackendState, error: str) -> None:
        """Take ``backend`` out of rotation until a health check reaches it again."""
        if backend.healthy:
            log.warning("backend %s is down: %s", backend.url, error)
        backend.healthy = False
        backend.last_error = error

    def _notify(self) -> None:
        for listener in self._listeners:
            listener()

    def candidates(self, model: str | None) -> list[BackendState]:
        """Healthy backends serving ``model``; if none lists it, every healthy backend.

        The fallback lets Ollama answer its own 404 for an unknown model (docs/contract.md §5:
        Ollama's 4xx pass through) and covers a model pulled since the last check.
        """
        healthy = [b for b in self.backends if b.healthy]
        if model is None:
            return healthy
        return [b for b in healthy if b.serves(model)] or healthy

    def pick(self, model: str | None) -> BackendState | None:
        """A free candidate for ``model``: one that has it loaded first, then the most free slots."""
        best: BackendState | None = None
        best_rank = (False, 0)
        for backend in self.candidates(model):
            rank = (backend.has_loaded(model), backend.free)
            if backend.free > 0 and (best is None or rank > best_rank):
                best, best_rank = backend, rank
        return best

    def snapshot(self) -> list[dict]:
        """Each backend's state as plain JSON-ready values."""
        return [
            {
                "url": b.url,
                "slots": b.slots,
                "in_use": b.in_use,
                "healthy": b.healthy,
                "models": None if b.models is None else sorted(b.models),
                "loaded": None if b.loaded is None else sorted(b.loaded),
            }
            for b in self.backends
        ]


def _model_names(response: httpx.Response) -> frozenset[str] | None:
    """Model names from an /api/tags answer; None if the body is not the usual shape."""
    try:
        entries = response.json()["models"]
        return frozenset(normalise_model_name(e.get("name") or e["model"]) for e in entries)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
