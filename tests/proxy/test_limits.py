"""The rpm and daily-token counters (docs/contract.md §7), in memory and in Redis, on one suite.

A hand-driven clock moves time; both implementations must count the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from proxy_app.limits import RESERVED_RETRY, RPM_WINDOW, TOKENS_WINDOW, Limits, LocalLimits, Spend
from tests.conftest import fresh_redis_url

START = 1_800_000_000.0  # epoch seconds


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["local", "redis"])
async def limits(request, clock) -> AsyncIterator[Limits]:
    """LocalLimits, then RedisLimits on an emptied Redis database."""
    if request.param == "local":
        yield LocalLimits(clock)
        return
    from redis.asyncio import Redis

    from proxy_app.limits_redis import RedisLimits

    redis = Redis.from_url(fresh_redis_url(12))
    counters = RedisLimits(redis, clock=clock)
    yield counters
    await counters.close()
    await redis.aclose()


async def take(limits: Limits, n: int, rpm: int, *, since: float = 0.0, who: str = "key:1") -> list:
    return [await limits.take_request(who, rpm, since, f"r{i}-{id(limits)}-{n}") for i in range(n)]


async def spend(limits: Limits, who: str, request_id: str, at: float, tokens: int) -> None:
    limits.spend(Spend(who, request_id, at, tokens))
    await limits.close()  # Redis writes spends in the background: wait for them


async def test_rpm_admits_up_to_the_limit_then_says_when_a_slot_frees(limits, clock):
    assert await take(limits, 3, 3) == [None, None, None]
    clock.now += 20
    assert await limits.take_request("key:1", 3, 0.0, "fourth") == 40  # the first leaves at +60
    clock.now += 40.5  # all three left the window together
    assert [await limits.take_request("key:1", 3, 0.0, f"late{i}") for i in range(4)] == [
        None,
        None,
        None,
        60,
    ]


async def test_rpm_refusals_are_not_counted_and_identities_are_apart(limits, clock):
    await take(limits, 2, 2)
    for _ in range(5):
        assert await limits.take_request("key:1", 2, 0.0, "again") == 60
    assert await limits.take_request("user:1", 2, 0.0, "other") is None
    clock.now += RPM_WINDOW + 0.1
    assert await take(limits, 2, 2) == [None, None]


async def test_rpm_counts_only_requests_from_the_moment_it_was_set(limits, clock):
    await take(limits, 5, 100)
    clock.now += 1
    since = clock.now
    assert await take(limits, 2, 2, since=since) == [None, None]
    assert await limits.take_request("key:1", 2, since, "third") == 60


async def test_a_lowered_rpm_waits_for_enough_of_the_window(limits, clock):
    for i in range(4):
        await limits.take_request("key:1", 10, 0.0, f"early{i}")
        clock.now += 10
    # Four requests at -40, -30, -20, -10 s; a limit of 2 needs the first three gone.
    assert await limits.take_request("key:1", 2, 0.0, "late") == 40


async def test_daily_tokens_refuse_once_reached_until_enough_has_left_the_window(limits, clock):
    assert await limits.tokens_retry_after("key:1", 100, 0.0) is None
    await spend(limits, "key:1", "a", clock.now, 60)
    clock.now += 3600
    await spend(limits, "key:1", "b", clock.now, 30)
    assert await limits.tokens_retry_after("key:1", 100, 0.0) is None  # 90 < 100
    await spend(limits, "key:1", "c", clock.now, 20)
    # 110 ≥ 100: under again once "a" (admitted an hour ago) leaves the 24 h window.
    assert await limits.tokens_retry_after("key:1", 100, 0.0) == TOKENS_WINDOW - 3600
    # A limit of 30 needs "a" and "b" gone: both leave 24 h after they were admitted.
    assert await limits.tokens_retry_after("key:1", 30, 0.0) == TOKENS_WINDOW
    assert await limits.tokens_retry_after("user:9", 100, 0.0) is None
    clock.now += TOKENS_WINDOW - 3600 + 1
    assert await limits.tokens_retry_after("key:1", 100, 0.0) is None


async def test_daily_tokens_count_from_the_moment_the_limit_was_set(limits, clock):
    await spend(limits, "key:1", "before", clock.now, 500)
    clock.now += 10
    since = clock.now
    assert await limits.tokens_retry_after("key:1", 100, since) is None
    await spend(limits, "key:1", "after", clock.now + 1, 100)
    clock.now += 2
    assert await limits.tokens_retry_after("key:1", 100, since) == TOKENS_WINDOW - 1


async def test_a_request_counts_once_and_seeded_spends_count(limits, clock):
    seeded = [Spend("key:1", "old", clock.now - 7200, 40), Spend("key:1", "older", clock.now - 90_000, 999)]
    await limits.seed(seeded)
    await limits.seed(seeded[:1])  # a second instance seeding the same rows
    await spend(limits, "key:1", "old", clock.now - 7200, 40)
    assert await limits.tokens_retry_after("key:1", 41, 0.0) is None  # 40: the day-old one is gone
    assert await limits.tokens_retry_after("key:1", 40, 0.0) == TOKENS_WINDOW - 7200


async def test_redis_keys_expire_after_their_window():
    from redis.asyncio import Redis

    from proxy_app.limits_redis import RedisLimits

    redis = Redis.from_url(fresh_redis_url(12))
    counters = RedisLimits(redis)
    try:
        await counters.take_request("key:1", 5, 0.0, "r1")
        counters.spend(Spend("key:1", "r1", START, 10))
        await counters.close()
        rpm_ttl = await redis.pttl("seadragon:limits:rpm:key:1")
        token_ttls = [
            await redis.pttl(f"seadragon:limits:{name}:key:1") for name in ("tokens", "tokens-meta")
        ]
    finally:
        await redis.aclose()
    assert 0 < rpm_ttl <= (RPM_WINDOW + 1) * 1000
    assert all(TOKENS_WINDOW * 1000 < ttl <= (TOKENS_WINDOW + 60) * 1000 for ttl in token_ttls)


async def test_requests_in_flight_hold_a_reserve_until_they_settle(limits, clock):
    # docs/contract.md §16: a concurrent burst overshoots by at most one request's reserve.
    assert await limits.take_tokens("key:1", 100, 0.0, "a", 60) is None
    assert await limits.take_tokens("key:1", 100, 0.0, "b", 30) is None  # 90 held < 100
    assert await limits.take_tokens("key:1", 100, 0.0, "c", 30) is None  # 90 < 100: in, 120 held
    assert await limits.take_tokens("key:1", 100, 0.0, "d", 1) is not None  # 120 ≥ 100
    assert await limits.take_tokens("user:2", 100, 0.0, "e", 500) is None  # others are apart
    await spend(limits, "key:1", "a", clock.now, 10)  # a settles at 10: 10 + 30 + 30 = 70
    limits.release("key:1", "b")  # b spent nothing countable: 10 + 30 = 40
    await limits.close()
    assert await limits.take_tokens("key:1", 100, 0.0, "f", 50) is None  # 90
    assert await limits.take_tokens("key:1", 100, 0.0, "g", 50) is None  # 90 < 100: the last one in
    assert await limits.take_tokens("key:1", 100, 0.0, "h", 1) is not None


async def test_a_reserve_refusal_says_retry_soon_and_a_spent_budget_says_when(limits, clock):
    assert await limits.take_tokens("key:1", 100, 0.0, "a", 500) is None
    assert await limits.take_tokens("key:1", 100, 0.0, "b", 1) == RESERVED_RETRY
    await spend(limits, "key:1", "a", clock.now, 150)
    clock.now += 60
    assert await limits.take_tokens("key:1", 100, 0.0, "b", 1) == TOKENS_WINDOW - 60
