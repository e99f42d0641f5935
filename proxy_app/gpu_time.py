"""GPU time per identity over a sliding window, for fair share by time (docs/contract.md §13).

A request's GPU time is how long it held a slot. :class:`GpuUsage` keeps each identity's slot
intervals, finished and still running, and answers how many seconds of them fall within the
last ``window`` seconds: 25 s of it with ``FAIR_SHARE_SECONDS=10`` is two fair-share steps for
the identity's next request. The in-process scheduler owns one; the Redis scheduler keeps the
same intervals in Redis (``scheduler_redis.lua``) so every instance sees them.

An answer costs O(log n), not O(n) for an identity that sent n requests in the window: the
finished intervals are kept in order of their end with their summed length, and only those
that began before the window's start need clipping. Each of those contains that start, so it
ended at most the longest duration in the window after it: a sliding maximum of the durations
bounds the few intervals looked at.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field


@dataclass
class _Intervals:
    """One identity's finished slot intervals in the window, ordered by end."""

    spans: deque[tuple[float, float, int]] = field(default_factory=deque)  # (start, end, number)
    total: float = 0.0  # the summed lengths of ``spans``
    longest: deque[tuple[int, float]] = field(default_factory=deque)  # (number, length), decreasing

    def add(self, start: float, end: float, number: int) -> None:
        length = end - start
        self.spans.append((start, end, number))
        self.total += length
        while self.longest and self.longest[-1][1] <= length:
            self.longest.pop()
        self.longest.append((number, length))

    def forget_before(self, low: float) -> None:
        while self.spans and self.spans[0][1] <= low:
            start, end, number = self.spans.popleft()
            self.total -= end - start
            if self.longest and self.longest[0][0] == number:
                self.longest.popleft()
        if not self.spans:
            self.total = 0.0  # no rounding left over from the subtractions

    def within(self, low: float) -> float:
        """Their seconds after ``low`` (every span ends after it)."""
        if not self.spans:
            return 0.0
        reach = low + self.longest[0][1]  # an interval that began before ``low`` ended by then
        clipped = 0.0
        for start, end, _ in self.spans:
            if end >= reach:
                break
            clipped += max(0.0, low - start)
        return self.total - clipped


class GpuUsage:
    """Slot intervals per identity; ``used(who, now)`` sums their overlap with ``[now - window, now]``."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._done: dict[str, _Intervals] = {}
        self._running: dict[str, dict[str, float]] = {}  # who -> request id -> start
        self._numbers = itertools.count()
        self._swept = float("-inf")

    def start(self, who: str, request_id: str, now: float) -> None:
        """``who``'s request took a slot at ``now``."""
        if who:
            self._running.setdefault(who, {})[request_id] = now

    def end(self, who: str, request_id: str, now: float) -> None:
        """``who``'s request gave its slot back at ``now``."""
        running = self._running.get(who)
        if not who or running is None or request_id not in running:
            return
        start = running.pop(request_id)
        if not running:
            del self._running[who]
        self._done.setdefault(who, _Intervals()).add(start, now, next(self._numbers))
        if now - self._swept >= self.window:
            # Identities that stopped calling (rotating end users among them) must not stay forever.
            self._swept = now
            for other in list(self._done):
                self._forget(other, now)

    def used(self, who: str, now: float) -> float:
        """Seconds of slot time ``who`` used within the last ``window`` seconds (running ones too)."""
        self._forget(who, now)
        low = now - self.window
        done = self._done.get(who)
        total = done.within(low) if done is not None else 0.0
        total += sum(now - max(start, low) for start in self._running.get(who, {}).values())
        return total

    def _forget(self, who: str, now: float) -> None:
        done = self._done.get(who)
        if done is None:
            return
        done.forget_before(now - self.window)
        if not done.spans:
            del self._done[who]
