"""GPU time per identity over a sliding window, for fair share by time (docs/contract.md §13).

A request's GPU time is how long it held a slot. :class:`GpuUsage` keeps each identity's slot
intervals, finished and still running, and answers how many seconds of them fall within the
last ``window`` seconds: 25 s of it with ``FAIR_SHARE_SECONDS=10`` is two fair-share steps for
the identity's next request. The in-process scheduler owns one; the Redis scheduler keeps the
same intervals in Redis (``scheduler_redis.lua``) so every instance sees them.
"""

from __future__ import annotations

from collections import deque


class GpuUsage:
    """Slot intervals per identity; ``used(who, now)`` sums their overlap with ``[now - window, now]``."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._done: dict[str, deque[tuple[float, float]]] = {}  # who -> (start, end), by end
        self._running: dict[str, dict[str, float]] = {}  # who -> request id -> start
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
        self._done.setdefault(who, deque()).append((start, now))
        self._forget(who, now)
        if now - self._swept >= self.window:
            # Identities that stopped calling (rotating end users among them) must not stay forever.
            self._swept = now
            for other in list(self._done):
                self._forget(other, now)

    def used(self, who: str, now: float) -> float:
        """Seconds of slot time ``who`` used within the last ``window`` seconds (running ones too)."""
        self._forget(who, now)
        low = now - self.window
        total = sum(end - max(start, low) for start, end in self._done.get(who, ()))
        total += sum(now - max(start, low) for start in self._running.get(who, {}).values())
        return total

    def _forget(self, who: str, now: float) -> None:
        done = self._done.get(who)
        if done is None:
            return
        while done and done[0][1] <= now - self.window:
            done.popleft()
        if not done:
            del self._done[who]
