"""Live numbers for ``GET /api/admin/stats`` and the dashboard's charts, from finished requests.

Wiring::

    live.observe(rec)    # per finished request (a RequestRecord), sync, O(1)
    live.refused(status) # another lane's refusal (401/403/404…): counted in status_counts only
    live.dispatched(request_id, source, wait_ms)   # at dispatch: the wait counts when it happened
    live.sample(scheduler.snapshot())               # every second: the charts' queue history
    live.payload(scheduler.snapshot())              # the /api/admin/stats body

The scheduler snapshot is a dict; missing keys count as zero/empty::

    {"queue_length": 3, "active_requests": 2,
     "queue_by_source": {"direct_api": 1, "custom_app": 2}, "active_by_source": {"web_chat": 2},
     "backends": [{"url": "http://gpu:11434", "healthy": True, "slots": 2, "in_use": 2}]}
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime

from common.models import iso
from common.sources import RequestSource
from proxy_app.cloud_policy import is_cloud_model
from proxy_app.request_log import RequestRecord

SOURCES: tuple[str, ...] = tuple(source.value for source in RequestSource)
RATE_WINDOW = 60  # seconds: requests per minute, tokens per second
WAIT_WINDOW = 300  # seconds: waits and status counts
HISTORY_STEP = 10  # seconds per chart point
HISTORY_POINTS = 180  # 30 minutes of chart
_MAX_DISPATCHED = 100_000  # bound on waits reported early, in case a request is never observed


def percentile(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 when empty)."""
    if not ordered:
        return 0.0
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


class _Tally:
    """Counts over one stretch of time: one second of the window, or one chart point."""

    __slots__ = (
        "start",
        "requests",
        "statuses",
        "waits",
        "tokens",
        "generation_ms",
        "cloud",
        "queue",
        "active",
        "gpu",
    )

    def __init__(self, start: int) -> None:
        self.start = start
        self.requests: dict[str | None, int] = {}
        self.statuses: dict[int, int] = {}
        self.waits: dict[str | None, list[float]] = {}  # seconds
        self.tokens = 0
        self.generation_ms = 0.0
        self.cloud = 0  # requests for cloud models: run on ollama.com, not on the GPU
        self.queue: int | None = None  # the highest sampled queue length in a chart point
        self.active: int | None = None
        self.gpu: dict[str | None, float] = {}  # GPU seconds (slot time) of the requests that ended here

    def add(self, rec: RequestRecord, count_wait: bool) -> None:
        self.requests[rec.source] = self.requests.get(rec.source, 0) + 1
        self.statuses[rec.status] = self.statuses.get(rec.status, 0) + 1
        if is_cloud_model(rec.model):
            self.cloud += 1
            return  # no slot held: its tokens say nothing of the GPU's speed
        if count_wait and rec.queue_wait_ms is not None:
            self.add_wait(rec.source, rec.queue_wait_ms)
        if rec.gpu_ms:
            self.gpu[rec.source] = self.gpu.get(rec.source, 0.0) + rec.gpu_ms / 1000
        if rec.completion_tokens and rec.duration_ms is not None:
            # The time the request held its slot: prompt evaluation and generation.
            held = rec.duration_ms - (rec.queue_wait_ms or 0.0)
            if held > 0:
                self.tokens += rec.completion_tokens
                self.generation_ms += held

    def add_wait(self, source: str | None, wait_ms: float) -> None:
        self.waits.setdefault(source, []).append(wait_ms / 1000)


def _tokens_per_second(tallies: Iterable[_Tally]) -> float:
    tokens = generation_ms = 0.0
    for tally in tallies:
        tokens += tally.tokens
        generation_ms += tally.generation_ms
    return round(tokens / (generation_ms / 1000), 1) if generation_ms else 0.0


def _share(gpu: dict[str | None, float], source: str) -> float:
    """``source``'s fraction of the GPU time in ``gpu`` (0.0 when none was used)."""
    total = sum(gpu.values())
    return round(gpu.get(source, 0.0) / total, 4) if total else 0.0


def _wait_summary(waits: list[float]) -> dict[str, float]:
    waits.sort()
    return {
        "average_wait_time": round(sum(waits) / len(waits), 3) if waits else 0.0,
        "p50_wait_time": round(percentile(waits, 50), 3),
        "p95_wait_time": round(percentile(waits, 95), 3),
    }


class LiveStats:
    """Rolling counters behind ``GET /api/admin/stats`` and the dashboard's charts.

    Per-second tallies cover the last ``WAIT_WINDOW`` seconds; chart points of
    ``HISTORY_STEP`` seconds cover the last ``HISTORY_POINTS`` steps. Waits
    are in seconds; percentiles are exact (nearest rank) over the window.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._wall_clock = wall_clock
        self._seconds: deque[_Tally] = deque()
        self._points: deque[_Tally] = deque(maxlen=HISTORY_POINTS)
        self._point: _Tally | None = None
        self._early_waits: dict[str, None] = {}  # insertion-ordered set of request ids

    def dispatched(self, request_id: str, source: str | None, wait_ms: float) -> None:
        """Count a request's queue wait now, as it gets its slot (``observe`` then skips it)."""
        now = self._clock()
        self._second(now).add_wait(source, wait_ms)
        self._chart_point(now).add_wait(source, wait_ms)
        self._early_waits[request_id] = None
        if len(self._early_waits) > _MAX_DISPATCHED:
            del self._early_waits[next(iter(self._early_waits))]

    def observe(self, rec: RequestRecord) -> None:
        """Count one finished request."""
        now = self._clock()
        count_wait = rec.request_id not in self._early_waits
        self._early_waits.pop(rec.request_id, None)
        self._second(now).add(rec, count_wait)
        self._chart_point(now).add(rec, count_wait)

    def refused(self, status: int) -> None:
        """Count a refusal outside the queued lane (a 401 on ``/api/tags``) in the answers only."""
        tally = self._second(self._clock())
        tally.statuses[status] = tally.statuses.get(status, 0) + 1

    def sample(self, snapshot: Mapping) -> None:
        """Record the scheduler's queue and active counts for the charts (call every second)."""
        point = self._chart_point(self._clock())
        queue, active = int(snapshot.get("queue_length", 0)), int(snapshot.get("active_requests", 0))
        point.queue = queue if point.queue is None else max(point.queue, queue)
        point.active = active if point.active is None else max(point.active, active)

    def payload(self, snapshot: Mapping) -> dict:
        """The ``/api/admin/stats`` body: live numbers, by source, and chart history."""
        now = self._clock()
        self._chart_point(now)  # closes finished chart points, even when idle
        self._evict(int(now))
        recent = [t for t in self._seconds if t.start > now - RATE_WINDOW]
        waits: dict[str | None, list[float]] = {}
        statuses: dict[int, int] = {}
        gpu: dict[str | None, float] = {}
        for tally in self._seconds:
            for source, used in tally.gpu.items():
                gpu[source] = gpu.get(source, 0.0) + used
            for source, values in tally.waits.items():
                waits.setdefault(source, []).extend(values)
            for status, count in tally.statuses.items():
                statuses[status] = statuses.get(status, 0) + count
        queue_by_source = snapshot.get("queue_by_source") or {}
        active_by_source = snapshot.get("active_by_source") or {}
        by_source = {
            source: {
                "queue_length": int(queue_by_source.get(source, 0)),
                "active_requests": int(active_by_source.get(source, 0)),
                "requests_per_minute": sum(t.requests.get(source, 0) for t in recent),
                **_wait_summary(list(waits.get(source, []))),
                "gpu_seconds": round(gpu.get(source, 0.0), 3),
                "gpu_share": _share(gpu, source),
            }
            for source in SOURCES
        }
        overall = _wait_summary([w for values in waits.values() for w in values])
        return {
            "queue_length": int(snapshot.get("queue_length", 0)),
            "active_requests": int(snapshot.get("active_requests", 0)),
            "requests_per_minute": sum(sum(t.requests.values()) for t in recent),
            "average_wait_time": overall["average_wait_time"],
            "p95_wait_time": overall["p95_wait_time"],
            "tokens_per_second": _tokens_per_second(recent),
            # docs/contract.md §13: GPU time (slot time) of the requests that ended in the window.
            "gpu_seconds": round(sum(gpu.values()), 3),
            "gpu_window_seconds": WAIT_WINDOW,
            "cloud": {"requests_per_minute": sum(t.cloud for t in recent)},
            "by_source": by_source,
            "backends": [dict(backend) for backend in snapshot.get("backends") or ()],
            "status_counts": {str(status): statuses[status] for status in sorted(statuses)},
            "generated_at": iso(datetime.fromtimestamp(self._wall_clock(), UTC)),
            "history": self._history(now),
        }

    def _second(self, now: float) -> _Tally:
        second = int(now)
        if not self._seconds or self._seconds[-1].start != second:
            self._evict(second)
            self._seconds.append(_Tally(second))
        return self._seconds[-1]

    def _evict(self, second: int) -> None:
        while self._seconds and self._seconds[0].start <= second - WAIT_WINDOW:
            self._seconds.popleft()

    def _chart_point(self, now: float) -> _Tally:
        start = int(now // HISTORY_STEP * HISTORY_STEP)
        point = self._point
        if point is None or start != point.start:
            if point is not None:
                self._points.append(point)
                # Idle stretches (no sample, no request) still take their place on the time axis.
                gap = range(point.start + HISTORY_STEP, start, HISTORY_STEP)
                for missing in gap[-HISTORY_POINTS:]:
                    self._points.append(_Tally(missing))
            self._point = point = _Tally(start)
        return point

    def _history(self, now: float) -> list[dict]:
        offset = self._wall_clock() - now  # monotonic → wall-clock seconds
        scale = 60 / HISTORY_STEP
        return [
            {
                "at": iso(datetime.fromtimestamp(point.start + offset, UTC)),
                "queue_length": point.queue,
                "active_requests": point.active,
                "tokens_per_second": _tokens_per_second((point,)),
                "by_source": {
                    source: {
                        "requests_per_minute": round(point.requests.get(source, 0) * scale, 1),
                        "p50_wait_time": round(percentile(sorted(point.waits.get(source, [])), 50), 3),
                        "p95_wait_time": round(percentile(sorted(point.waits.get(source, [])), 95), 3),
                        "gpu_seconds": round(point.gpu.get(source, 0.0), 3),
                    }
                    for source in SOURCES
                },
            }
            for point in self._points
        ]
