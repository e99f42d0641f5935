"""The counters behind ``rpm`` and ``daily_tokens`` (docs/contract.md §7): one interface, two homes.

:class:`LocalLimits` keeps them in this process; :class:`~proxy_app.limits_redis.RedisLimits`
keeps them in Redis so that every instance sharing ``REDIS_URL`` shares them. Both count the same
way (the tests run one suite against both):

* ``rpm``: the queued-lane requests admitted in the last 60 s, each noted at admission; a request
  that would be the ``rpm + 1``-th is refused and noted nowhere.
* ``daily_tokens``: prompt + completion tokens of the requests of the last 24 h, each noted when
  it finishes under the time it was admitted (``spend``). A request in flight holds a *reserve*
  (``take_tokens``: its ``num_predict`` / ``max_tokens``, else ``DAILY_TOKENS_RESERVE``), settled
  by its spend (or ``release``) when it ends; a request is refused while the spends plus the
  reserves have reached the limit, so a concurrent burst overshoots by at most one request's
  reserve (docs/contract.md §16 "Tokens are charged as delivered").

Both take ``since``: the moment the limit was set (epoch seconds, ``0`` when unknown). Requests
from before it are not counted, so a limit counts requests from the moment it is set. Refusals
carry how long until the count drops below the limit (``Retry-After``, whole seconds, at least 1).
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

RPM_WINDOW = 60.0  # seconds: "per rolling minute"
TOKENS_WINDOW = 86_400.0  # seconds: "per rolling 24 h"
SWEEP_INTERVAL = 60.0  # seconds between sweeps of identities that stopped calling
# Retry-After when only reserves of requests still in flight fill the budget: when they end is
# unknown, and they settle (usually below their reserve) within a generation's time.
RESERVED_RETRY = 10

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Spend:
    """The tokens one finished request used, under the time it was admitted."""

    who: str
    request_id: str
    at: float  # epoch seconds
    tokens: int


class Limits(Protocol):
    """Where the rpm and daily-token counts live."""

    async def take_request(self, who: str, rpm: int, since: float, request_id: str) -> int | None:
        """Count one request against ``rpm``; ``None`` if admitted, else the Retry-After seconds."""
        ...

    async def tokens_retry_after(self, who: str, daily_tokens: int, since: float) -> int | None:
        """``None`` while ``who`` is under ``daily_tokens``, else the Retry-After seconds."""
        ...

    async def take_tokens(
        self, who: str, daily_tokens: int, since: float, request_id: str, reserve: int
    ) -> int | None:
        """Admit and hold ``reserve`` tokens while spends plus reserves are under the limit; else
        the Retry-After seconds (nothing held)."""
        ...

    def spend(self, spend: Spend) -> None:
        """Note a finished request's tokens and settle its reserve (a request counts once)."""
        ...

    def release(self, who: str, request_id: str) -> None:
        """Drop a reserve whose request spent nothing countable."""
        ...

    async def seed(self, spends: Iterable[Spend]) -> None:
        """Note the tokens of requests finished before start-up (from the request log)."""
        ...

    async def close(self) -> None:
        """Finish pending writes."""
        ...


def retry_seconds(seconds: float) -> int:
    """A wait as a ``Retry-After`` value: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(seconds))


class _Requests:
    """Admission times (sorted) of one identity's last minute."""

    __slots__ = ("times",)

    def __init__(self) -> None:
        self.times: list[float] = []

    def take(self, rpm: int, since: float, now: float) -> float | None:
        del self.times[: bisect.bisect_right(self.times, now - RPM_WINDOW)]
        start = bisect.bisect_left(self.times, max(now - RPM_WINDOW, since))
        counted = len(self.times) - start
        if counted >= rpm:
            # A slot frees when the request that makes the count reach the limit leaves the window.
            return self.times[start + counted - rpm] + RPM_WINDOW - now
        bisect.insort(self.times, now)
        return None


class _Tokens:
    """One identity's token spends of the last 24 h, with the running sum of those at or after ``since``."""

    __slots__ = ("entries", "held", "ids", "since", "total")

    def __init__(self) -> None:
        self.entries: list[tuple[float, int, str]] = []  # (admitted at, tokens, request id), sorted
        self.ids: set[str] = set()
        self.since = 0.0
        self.total = 0
        self.held: dict[str, int] = {}  # request id -> tokens reserved while it is in flight

    def advance(self, since: float, now: float) -> None:
        expired = bisect.bisect_left(self.entries, (now - TOKENS_WINDOW, -1))
        for at, tokens, request_id in self.entries[:expired]:
            self.total -= tokens if at >= self.since else 0
            self.ids.discard(request_id)
        del self.entries[:expired]
        if since > self.since:
            # The limit was (re)set: only what was admitted from then on counts.
            self.since = since
            self.total = sum(tokens for at, tokens, _ in self.entries if at >= since)

    def add(self, spend: Spend, now: float) -> None:
        self.held.pop(spend.request_id, None)
        if spend.request_id in self.ids or spend.at <= now - TOKENS_WINDOW:
            return
        self.ids.add(spend.request_id)
        bisect.insort(self.entries, (spend.at, spend.tokens, spend.request_id))
        if spend.at >= self.since:
            self.total += spend.tokens

    def retry_after(self, limit: int, now: float) -> float | None:
        if self.total < limit:
            return None
        left = self.total
        for at, tokens, _ in self.entries[bisect.bisect_left(self.entries, (self.since, -1)) :]:
            left -= tokens
            if left < limit:
                return at + TOKENS_WINDOW - now
        return TOKENS_WINDOW  # unreachable while total counts these entries


class LocalLimits:
    """The counters of one gateway process (no ``REDIS_URL``)."""

    def __init__(self, clock: Clock = time.time) -> None:
        self.clock = clock
        self._requests: dict[str, _Requests] = {}
        self._tokens: dict[str, _Tokens] = {}
        self._swept = clock()

    async def take_request(self, who: str, rpm: int, since: float, request_id: str) -> int | None:
        """Count one request against ``rpm``; ``None`` if admitted, else the Retry-After seconds."""
        now = self.clock()
        self._sweep(now)
        wait = self._requests.setdefault(who, _Requests()).take(rpm, since, now)
        return None if wait is None else retry_seconds(wait)

    async def tokens_retry_after(self, who: str, daily_tokens: int, since: float) -> int | None:
        """``None`` while ``who`` is under ``daily_tokens``, else the Retry-After seconds."""
        now = self.clock()
        tokens = self._tokens.setdefault(who, _Tokens())
        tokens.advance(since, now)
        wait = tokens.retry_after(daily_tokens, now)
        return None if wait is None else retry_seconds(wait)

    async def take_tokens(
        self, who: str, daily_tokens: int, since: float, request_id: str, reserve: int
    ) -> int | None:
        """Admit and hold ``reserve`` while spends plus reserves are under the limit, else Retry-After."""
        now = self.clock()
        tokens = self._tokens.setdefault(who, _Tokens())
        tokens.advance(since, now)
        wait = tokens.retry_after(daily_tokens, now)
        if wait is not None:
            return retry_seconds(wait)
        if tokens.total + sum(tokens.held.values()) >= daily_tokens:
            return RESERVED_RETRY
        if reserve > 0:
            tokens.held[request_id] = reserve
        return None

    def spend(self, spend: Spend) -> None:
        """Note a finished request's tokens and settle its reserve."""
        now = self.clock()
        tokens = self._tokens.setdefault(spend.who, _Tokens())
        tokens.advance(0.0, now)
        tokens.add(spend, now)

    def release(self, who: str, request_id: str) -> None:
        """Drop a reserve whose request spent nothing countable."""
        tokens = self._tokens.get(who)
        if tokens is not None:
            tokens.held.pop(request_id, None)

    async def seed(self, spends: Iterable[Spend]) -> None:
        """Note the tokens of requests finished before start-up."""
        for spend in spends:
            self.spend(spend)

    async def close(self) -> None:
        """Nothing is pending in memory."""

    def _sweep(self, now: float) -> None:
        # Identities that stopped calling would otherwise keep their last entries forever.
        if now - self._swept < SWEEP_INTERVAL:
            return
        self._swept = now
        for who in [
            who for who, log in self._requests.items() if not log.times or log.times[-1] <= now - RPM_WINDOW
        ]:
            del self._requests[who]
        for who, tokens in list(self._tokens.items()):
            tokens.advance(0.0, now)
            if not tokens.entries and not tokens.held:
                del self._tokens[who]
