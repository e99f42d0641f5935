"""The rpm and daily-token counters in Redis: every instance sharing ``REDIS_URL`` shares them.

Same interface and counting as :class:`proxy_app.limits.LocalLimits`; each call is one atomic
Lua script (``limits_redis.lua``). Keys, under ``<prefix>:limits:`` (default prefix ``seadragon``):

- ``rpm:<who>`` sorted set of the last minute's admitted request ids, scored by admission time;
  it expires a minute after the last admission.
- ``tokens:<who>`` sorted set of the last day's spends (member ``<tokens>:<request id>``, so
  writing one twice counts it once), scored by admission time; ``tokens-meta:<who>`` hash with the
  running ``total`` of the spends from ``since`` on. Both expire a day after the last spend.
- ``held:<who>`` sorted set of the request ids in flight holding a reserve, scored by when they
  took it, and ``held-n:<who>`` hash of their reserves; a reserve not settled within
  ``RESERVE_LAPSE`` (its instance died) lapses.

If Redis cannot be reached, requests are admitted (and an error logged): a limit is not worth
refusing every request for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from proxy_app.limits import RESERVED_RETRY, RPM_WINDOW, TOKENS_WINDOW, Clock, Spend, retry_seconds

log = logging.getLogger("seadragon.gateway")
SCRIPT = Path(__file__).with_name("limits_redis.lua").read_text()
SEED_BATCH = 500  # spends sent per pipeline at start-up
# Seconds after which a reserve nobody settled lapses: only an instance that died leaves one that
# long (a request settles when it ends; streams are far shorter), and it must not hold a day.
RESERVE_LAPSE = 6 * 3600.0


class RedisLimits:
    """The counters of every instance, in Redis."""

    def __init__(self, redis: Any, *, prefix: str = "seadragon", clock: Clock = time.time) -> None:
        self.clock = clock
        self.prefix = f"{prefix}:limits"
        self._redis = redis  # the gateway's client: closed by the gateway
        self._script = redis.register_script(SCRIPT)
        self._pending: set[asyncio.Task] = set()

    async def take_request(self, who: str, rpm: int, since: float, request_id: str) -> int | None:
        """Count one request against ``rpm``; ``None`` if admitted, else the Retry-After seconds."""
        now = self.clock()
        args = ["take", rpm, repr(since), repr(now), RPM_WINDOW, request_id]
        return await self._wait(keys=[f"{self.prefix}:rpm:{who}"], args=args)

    async def tokens_retry_after(self, who: str, daily_tokens: int, since: float) -> int | None:
        """``None`` while ``who`` is under ``daily_tokens``, else the Retry-After seconds."""
        now = self.clock()
        args = ["tokens", daily_tokens, repr(since), repr(now), TOKENS_WINDOW]
        return await self._wait(keys=self._token_keys(who), args=args)

    async def take_tokens(
        self, who: str, daily_tokens: int, since: float, request_id: str, reserve: int
    ) -> int | None:
        """Admit and hold ``reserve`` while spends plus reserves are under the limit, else Retry-After."""
        now = self.clock()
        args = ["take_tokens", daily_tokens, repr(since), repr(now), TOKENS_WINDOW, request_id, reserve]
        try:
            taken = await self._script(keys=self._token_keys(who), args=[*args, RESERVE_LAPSE])
        except RedisError as exc:
            log.error("token limits unavailable (Redis): %s; request admitted", exc)
            return None
        if taken is None:
            return None
        wait = float(taken)
        return RESERVED_RETRY if wait < 0 else retry_seconds(wait)

    def spend(self, spend: Spend) -> None:
        """Note a finished request's tokens and settle its reserve (written in the background)."""
        self._background(self._spend(spend))

    def release(self, who: str, request_id: str) -> None:
        """Drop a reserve whose request spent nothing countable (in the background)."""
        self._background(self._call(self._token_keys(who), ["release", request_id], f"release {who}"))

    def _background(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def seed(self, spends: Iterable[Spend]) -> None:
        """Note the tokens of requests finished before start-up (already noted ones count once)."""
        batch: list[Spend] = []
        for spend in spends:
            batch.append(spend)
            if len(batch) >= SEED_BATCH:
                await self._seed_batch(batch)
                batch = []
        if batch:
            await self._seed_batch(batch)

    async def close(self) -> None:
        """Wait for the spends still being written."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    def _token_keys(self, who: str) -> list[str]:
        names = ("tokens", "tokens-meta", "held", "held-n")
        return [f"{self.prefix}:{name}:{who}" for name in names]

    def _spend_args(self, spend: Spend) -> list:
        member = f"{spend.tokens}:{spend.request_id}"
        now = repr(self.clock())
        return ["spend", member, repr(spend.at), now, TOKENS_WINDOW, spend.tokens, spend.request_id]

    async def _wait(self, *, keys: list[str], args: list) -> int | None:
        try:
            wait = await self._script(keys=keys, args=args)
        except RedisError as exc:
            log.error("rate limits unavailable (Redis): %s; request admitted", exc)
            return None
        return None if wait is None else retry_seconds(float(wait))

    async def _spend(self, spend: Spend) -> None:
        what = f"count {spend.tokens} tokens of {spend.who}"
        await self._call(self._token_keys(spend.who), self._spend_args(spend), what)

    async def _call(self, keys: list[str], args: list, what: str) -> None:
        try:
            await self._script(keys=keys, args=args)
        except RedisError as exc:
            log.error("cannot %s in Redis: %s", what, exc)

    async def _seed_batch(self, batch: list[Spend]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for spend in batch:
                keys, args = self._token_keys(spend.who), self._spend_args(spend)
                await self._script(keys=keys, args=args, client=pipe)
            await pipe.execute()
