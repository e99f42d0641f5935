"""Per-identity policies enforced on requests (docs/contract.md §7), in one place.

``ProxiedRequest.serve`` calls :meth:`PolicyGate.admit` once the request's body (and so its model)
is known, before it is queued or relayed, and passes the fast lane's answers through
:meth:`PolicyGate.listed`; ``Gateway.finish`` hands every finished request to
:meth:`PolicyGate.spent`. What each field does:

* ``models`` — a generation for another model: 403 ``model '<name>' is not allowed for this key``
  (never forwarded); ``/api/show`` or ``/v1/models/{id}`` of another: 404; ``/api/tags``,
  ``/api/ps`` and ``/v1/models`` list only the allowed ones.
* ``daily_tokens``, then ``rpm`` — queued-lane requests only: 429 with ``Retry-After``
  (counters: :mod:`proxy_app.limits`). A request refused for tokens does not use up a request.
  An admitted request holds a reserve against ``daily_tokens`` (:func:`token_reserve`) until it
  ends, when its delivered tokens replace it (docs/contract.md §16).
* ``daily_gpu_seconds`` — GPU time (slot time, docs/contract.md §13) per rolling 24 h, counted
  like ``daily_tokens`` in milliseconds under ``gpu-ms:<who>``: 429 with ``Retry-After`` once spent.
* ``expires_at`` is checked when the request is classified (``proxy_app.classify.identify``);
  ``max_queued`` / ``max_concurrent`` by the scheduler, which gets them on the ticket.

Limits count from the moment they are set: the gateway notes when it sees an identity's ``rpm``
or ``daily_tokens`` change (within a refresh of the identity cache, 0.5 s); at start-up, when the
audit log last recorded such a change in the last day. Older requests are not counted.
"""

from __future__ import annotations

import json
import math
import time
from typing import TYPE_CHECKING, Any

from quart import Response
from sqlalchemy.ext.asyncio import AsyncEngine

from common.policies import DAILY_GPU_SECONDS, DAILY_TOKENS, RPM, Policy, model_allowed
from common.routes import Lane, Merge
from common.sources import subjects_of
from proxy_app.bodies import model_of
from proxy_app.errors import BadGateway, Forbidden, NotFound, ProxyError
from proxy_app.identity_cache import IdentityCache
from proxy_app.identity_snapshot import NO_POLICY, Snapshot
from proxy_app.limit_history import GPU, limit_changes, recent_gpu_spends, recent_spends
from proxy_app.limits import TOKENS_WINDOW, Clock, Limits, LocalLimits, Spend
from proxy_app.request_log import RequestRecord

if TYPE_CHECKING:  # the request object calls this module; it only names it
    from proxy_app.proxied import ProxiedRequest

# Fast-lane endpoints that describe one model: another model's is "not found" (docs/contract.md §7).
ONE_MODEL_ENDPOINTS = frozenset({"/api/show", "/v1/models/{id}"})
# How refusals name the identity, by the kind in its ``who``.
WHOSE = {"key": "this key", "ip": "this address", "user": "this account"}


class TooManyRequests(ProxyError):
    """A rate or token limit is reached (429 with ``Retry-After``)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(429, message, {"Retry-After": str(retry_after)})


def make_limits(redis: Any | None) -> Limits:
    """The counters: shared through Redis with ``REDIS_URL``, in this process otherwise."""
    if redis is None:
        return LocalLimits()
    from proxy_app.limits_redis import RedisLimits  # only scale-out needs it

    return RedisLimits(redis)


class PolicyGate:
    """Admission by policy, model-list filtering, and the token counting behind ``daily_tokens``."""

    def __init__(
        self,
        cache: IdentityCache,
        limits: Limits,
        engine: AsyncEngine,
        *,
        clock: Clock = time.time,
        default_reserve: int = 1024,
    ) -> None:
        self.cache = cache
        self.limits = limits
        self.clock = clock
        self._engine = engine
        # (who, "rpm" | "daily_tokens") -> when that limit was set (epoch s); absent: count everything.
        self._since: dict[tuple[str, str], float] = {}
        self._seen: dict[str, tuple[int | None, ...]] = {}
        self._held: dict[str, set[str]] = {}  # request id -> whose daily_tokens it holds reserves against
        self._subjects: dict[str, list[str]] = {}  # request id -> the subjects it was admitted under
        self.default_reserve = default_reserve  # DAILY_TOKENS_RESERVE

    async def start(self) -> None:
        """Read back when limits were set and the last day's tokens; then follow policy changes."""
        snapshot = self.cache.snapshot
        self._seen = _limit_values(snapshot)
        after = self.clock() - TOKENS_WINDOW
        self._since = await limit_changes(self._engine, after)
        limited = {who for who, policy in snapshot.policies.items() if policy.daily_tokens is not None}
        await self.limits.seed(await recent_spends(self._engine, after, limited))
        budgeted = {who for who, policy in snapshot.policies.items() if policy.daily_gpu_seconds is not None}
        await self.limits.seed(await recent_gpu_spends(self._engine, after, budgeted))
        self.cache.on_refresh(self._note_changes)

    async def close(self) -> None:
        """Finish the counters' pending writes."""
        await self.limits.close()

    async def admit(self, proxied: ProxiedRequest, payload: dict) -> None:
        """Refuse the request if its identity's policy says so (403, 404 or 429); else count it."""
        identity, route = proxied.identity, proxied.route
        if identity is None:
            raise RuntimeError("ProxiedRequest.admit() first")
        # Every subject's policy must allow it (docs/contract.md §16): today the holder's alone.
        subjects = [(who, policy) for who, policy in identity.limit_subjects if policy is not NO_POLICY]
        if route.lane is Lane.QUEUED:
            model = model_of(payload)
            for who, policy in subjects:
                if model is not None and not model_allowed(policy, model):
                    raise Forbidden(f"model '{model}' is not allowed for {_whose(who)}")
            for who, policy in subjects:
                await self._check_limits(who, policy, proxied.request_id, self._reserve(payload))
        elif route.name in ONE_MODEL_ENDPOINTS:
            model = route.model or model_of(payload)
            if model is not None and any(not model_allowed(policy, model) for _, policy in subjects):
                raise NotFound(f"model '{model}' not found")

    async def listed(self, proxied: ProxiedRequest, response: Response) -> Response:
        """``/api/tags``, ``/api/ps`` and ``/v1/models`` with only the models the identity may use."""
        identity, route = proxied.identity, proxied.route
        if (
            identity is None
            or not (identity.policy.models or identity.key_policy.models)
            or route.merge is Merge.NONE
            or route.method != "GET"
            or response.status_code != 200
        ):
            return response  # passed through untouched (byte for byte from one backend)
        try:
            data = json.loads(await response.get_data())
        except ValueError:
            data = None
        items = data.get(route.merge.value) if isinstance(data, dict) else None
        if not isinstance(data, dict) or not isinstance(items, list):
            raise proxied.fail(BadGateway("Ollama's model list could not be read"))
        data[route.merge.value] = [
            item
            for item in items
            if _item_allowed(identity.policy, item, route.merge)
            and _item_allowed(identity.key_policy, item, route.merge)
        ]
        response.set_data(json.dumps(data, separators=(",", ":")))
        return response

    def spent(self, record: RequestRecord) -> None:
        """Count a finished request's tokens and GPU time against the ``daily_tokens`` and
        ``daily_gpu_seconds`` of every subject it was admitted under, settling the reserves it held."""
        tokens = (record.prompt_tokens or 0) + (record.completion_tokens or 0)
        gpu_ms = math.ceil(record.gpu_ms or 0)
        at = record.created_at.timestamp()
        subjects = self._subjects.pop(record.request_id, None)
        if subjects is None:  # not admitted through the limits (no policy then): its row's subjects
            subjects = subjects_of(record.api_key_id, record.whitelist_entry_id, record.user_id)
        held = self._held.pop(record.request_id, set())
        for who in subjects:
            policy = self.cache.snapshot.policy_of(who)
            if tokens > 0 and policy.daily_tokens is not None:
                self.limits.spend(Spend(who, record.request_id, at, tokens))  # settles its reserve too
            elif who in held:
                self.limits.release(who, record.request_id)
            if gpu_ms > 0 and policy.daily_gpu_seconds is not None:
                self.limits.spend(Spend(GPU + who, record.request_id, at, gpu_ms))

    def since(self, who: str, field: str) -> float:
        """When ``who``'s ``field`` limit was set (epoch seconds; 0 when earlier than anything counted)."""
        return self._since.get((who, field), 0.0)

    def _reserve(self, payload: dict) -> int:
        return token_reserve(payload) or self.default_reserve

    async def _check_limits(self, who: str, policy: Policy, request_id: str, reserve: int) -> None:
        # Counters are the subject's: one per key, whatever end user a request names.
        self._subjects.setdefault(request_id, []).append(who)
        if policy.daily_tokens is not None:
            since = self.since(who, DAILY_TOKENS)
            wait = await self.limits.take_tokens(who, policy.daily_tokens, since, request_id, reserve)
            if wait is not None:
                raise TooManyRequests(
                    f"daily token limit of {policy.daily_tokens} reached for {_whose(who)}", wait
                )
            if reserve > 0:
                self._held.setdefault(request_id, set()).add(who)
        if policy.daily_gpu_seconds is not None:
            since = self.since(who, DAILY_GPU_SECONDS)
            budget_ms = policy.daily_gpu_seconds * 1000
            wait = await self.limits.tokens_retry_after(GPU + who, budget_ms, since)
            if wait is not None:
                limit = policy.daily_gpu_seconds
                raise TooManyRequests(
                    f"daily GPU time limit of {limit} seconds reached for {_whose(who)}", wait
                )
        if policy.rpm is not None:
            wait = await self.limits.take_request(who, policy.rpm, self.since(who, RPM), request_id)
            if wait is not None:
                raise TooManyRequests(
                    f"rate limit of {policy.rpm} requests per minute reached for {_whose(who)}", wait
                )

    def _note_changes(self, snapshot: Snapshot) -> None:
        # Runs right after the cache swaps snapshots, before any request sees the new one.
        now = self.clock()
        seen = _limit_values(snapshot)
        unset = (None,) * len(_COUNTED)
        for who in seen.keys() | self._seen.keys():
            old, new = self._seen.get(who, unset), seen.get(who, unset)
            for field, before, after in zip(_COUNTED, old, new, strict=True):
                if before != after:
                    self._since[(who, field)] = now
        self._seen = seen


# Where each protocol names the most tokens a request may generate (Ollama's native routes in
# ``options``; OpenAI chat/completions, Anthropic Messages, OpenAI Responses at the top level).
_TOKEN_CAPS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


def token_reserve(payload: dict) -> int | None:
    """The tokens a request says it may generate (``num_predict``, ``max_tokens``, ...), or None."""
    options = payload.get("options")
    values = [options.get("num_predict")] if isinstance(options, dict) else []
    values += [payload.get(name) for name in _TOKEN_CAPS]
    caps = [v for v in values if isinstance(v, int) and not isinstance(v, bool) and v > 0]
    return min(caps) if caps else None  # num_predict -1 / -2 (no cap) name no limit


# The limits counted over a window: each counts from the moment it is set.
_COUNTED = (RPM, DAILY_TOKENS, DAILY_GPU_SECONDS)


def _limit_values(snapshot: Snapshot) -> dict[str, tuple[int | None, ...]]:
    values = {who: tuple(getattr(p, field) for field in _COUNTED) for who, p in snapshot.policies.items()}
    return {who: limits for who, limits in values.items() if any(v is not None for v in limits)}


def _whose(who: str) -> str:
    return WHOSE[who.partition(":")[0]]


def _item_allowed(policy: Policy, item: object, merge: Merge) -> bool:
    if not isinstance(item, dict):
        return False
    name = item.get("id") if merge is Merge.OPENAI_MODELS else item.get("name") or item.get("model")
    return isinstance(name, str) and model_allowed(policy, name)
