"""One proxied request from admission to its request-log row: :class:`ProxiedRequest`.

Every ``/api/`` and ``/v1/`` request is one ``ProxiedRequest``, queued or not.
It carries the request's route, identity and principal, its ticket, slot and
upstream exchange, and how it ended (status, stage, error); it turns them into
one :class:`~proxy_app.request_log.RequestRecord` when it closes, whatever
the end: completion, refusal, an upstream that broke, a client that left.

The path of one request (``proxy_app.views.api``)::

    proxied = ProxiedRequest(gw, request_id=..., method=..., endpoint=..., client_ip=...)
    on_request_end(scope, proxied.close)      # once: frees everything, writes the row
    with proxied.recording_errors():          # a refusal's status and message go on the row
        proxied.route_to(resolve(method, path))
        proxied.admit(await gw.identify(principal), principal)
        return await proxied.serve(content, forward_headers(...))

Where later features plug in:

* Per-identity policy (docs/contract.md §7): ``proxy_app.policy_gate``, called by
  :meth:`serve` once the body names the model; ``expires_at`` at classification.
* The web chat (``proxy_app.chat_stream``, another Quart endpoint that streams its
  own events) serves a generation with the same object and its steps:
  ``route_to``, ``admit(identity, principal)``, ``enqueue``, :meth:`queue_position` and
  :meth:`queue_eta` while waiting, ``wait_for_slot``, ``open``, ``relay``; ``close`` writes its row.
* Stream dialects: each route carries its protocol's
  :class:`~proxy_app.dialects.StreamDialect` (``route.dialect``), which makes
  its in-band errors, queue-position comments and usage parsing.
* Lanes: :meth:`serve` reads the body's fields once, applies the policy, then queues a
  generation (``proxy_app.queued``), relays a cloud-model one at once without a slot
  (``proxy_app.cloud_lane``, after ``cloud_policy.check_cloud_access``), or relays
  anything else at once (``proxy_app.unqueued``).

Longer than 300 lines on purpose: it is the one object that owns a proxied request, so every
step of that story (admission, queue, upstream, relay, cancel, close, the log row) reads here in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime

from quart import Response

from common.models import utcnow
from common.security import presented_key_prefix
from common.sources import Identity, with_end_user
from proxy_app.bodies import Content, model_of, request_fields
from proxy_app.classify import Principal
from proxy_app.cloud_lane import serve_cloud
from proxy_app.cloud_policy import admin_or_whitelisted, check_cloud_access, is_cloud_model
from proxy_app.errors import KNOWN_ERRORS, Forbidden, ProxyError, Unavailable, as_proxy_error
from proxy_app.gateway import SHUTTING_DOWN, Gateway
from proxy_app.model_profiles import model_loaded
from proxy_app.queued import serve_queued
from proxy_app.request_log import RequestRecord
from proxy_app.routes import Lane, Route
from proxy_app.scheduler import Grant, LimitSubject, SchedulerError, Ticket
from proxy_app.unqueued import serve_unqueued
from proxy_app.upstream import Exchange, redact_url
from proxy_app.usage_parse import UsageTracker

log = logging.getLogger(__name__)

CLIENT_LEFT = 499


class ProxiedRequest:
    """One request through the gateway: who, where to, its slot and exchange, and how it ended."""

    def __init__(
        self,
        gw: Gateway,
        *,
        request_id: str,
        method: str,
        endpoint: str,
        client_ip: str | None,
    ) -> None:
        self.gw = gw
        self.request_id = request_id
        self.method = method
        self.endpoint = endpoint  # the path as asked, until a route names it
        self.client_ip = client_ip
        self.arrived = time.monotonic()
        self.created_at: datetime = utcnow()
        self._route: Route | None = None
        self.identity: Identity | None = None
        self.principal: Principal | None = None
        self.model: str | None = None
        self.usage: UsageTracker | None = None  # generations only: their token counts
        self.adjusted: list[str] = []  # what its model's profile changed (docs/contract.md §12)
        # The queue: the scheduler's task while waiting, its grant once dispatched.
        self.task: asyncio.Task[Grant] | None = None
        self.grant: Grant | None = None
        self.exchange: Exchange | None = None
        self.backend_url: str | None = None  # where it was sent (a queued one: its grant's backend)
        self.cancelled: ProxyError | None = None  # an administrator's cancel of the active request
        self._opening: asyncio.Task[Exchange] | None = None  # the wait for Ollama's status line
        self.ttfb_ms: float | None = None
        self.slot_at: float | None = None  # monotonic time it got its slot (docs/contract.md §13)
        self.gpu_ms: float | None = None  # how long it held the slot, once released
        # How it ended: status None until known (a close without one is a client that left);
        # stage says where a request that did not finish well stopped.
        self.status: int | None = None
        self.stage: str | None = None
        self.error: str | None = None
        self.closed = False

    # --- admission -------------------------------------------------------------------------

    def route_to(self, route: Route) -> None:
        """The endpoint this request is for (from :func:`proxy_app.routes.resolve`)."""
        self._route = route
        self.endpoint, self.model = route.name, route.model
        if route.lane is Lane.QUEUED:
            self.usage = UsageTracker(route.dialect.usage_kind)

    def presented(self, principal: Principal) -> None:
        """What the request presented, before it is classified: a refused key's prefix goes on its row."""
        self.principal = principal

    def admit(self, identity: Identity, principal: Principal | None = None) -> None:
        """Who is calling and whether they may; ``principal`` lets a waiting request be re-checked.

        The identity's policy (``identity.policy``) is applied by :meth:`serve`, once the body is read.
        """
        self.identity, self.principal = identity, principal
        if principal is not None:
            self.client_ip = str(principal.client_ip) if principal.client_ip is not None else None
        if self.route.admin_only and not admin_or_whitelisted(identity):
            raise Forbidden(self.route.admin_only)

    def name_end_user(self, header_value: Callable[[str], str | None]) -> None:
        """The person behind a shared key, if the key names a header for it (400 if unreadable)."""
        if self.identity is not None:
            self.identity = with_end_user(self.identity, header_value, self.gw.settings.end_user_max_length)

    @property
    def route(self) -> Route:
        """The endpoint this request is for (it must be routed first)."""
        if self._route is None:
            raise RuntimeError("ProxiedRequest.route_to() first")
        return self._route

    @contextlib.contextmanager
    def recording_errors(self) -> Iterator[None]:
        """Note any refusal raised inside on the request's row, then let it propagate."""
        try:
            yield
        except KNOWN_ERRORS as exc:
            self.fail(as_proxy_error(exc))
            raise

    # --- serving ---------------------------------------------------------------------------

    async def serve(self, content: Content, headers: list[tuple[str, str]]) -> Response:
        """Answer it: queue a generation for a slot, or relay it at once (a cloud model's, the rest)."""
        with self.recording_errors():
            fields = request_fields(self.route, content, headers)
            await self.gw.policies.admit(self, fields)  # docs/contract.md §7: models, rpm, daily_tokens
            if self.route.lane is not Lane.QUEUED:
                answer = await serve_unqueued(self, content, headers, fields)
                return await self.gw.policies.listed(self, answer)
            model = model_of(fields)
            if is_cloud_model(model):
                if self.identity is None:
                    raise RuntimeError("ProxiedRequest.admit() first")
                check_cloud_access(self.gw.settings, self.identity)  # docs/contract.md §3
                self.model = model
                return await serve_cloud(self, content, headers, fields)
            return await serve_queued(self, content, headers, fields)

    def enqueue(
        self, model: str | None, *, max_parallel: int | None = None, conversation: str | None = None
    ) -> asyncio.Task[Grant]:
        """Ask the scheduler for a slot for ``model``, in the background (see :meth:`wait_for_slot`).

        ``max_parallel`` is the model's cap and ``conversation`` its key (docs/contract.md §12).
        """
        identity = self.identity
        if identity is None:
            raise RuntimeError("ProxiedRequest.admit() first")
        self.model = model
        self.stage = "queued"
        if self.gw.draining:  # docs/contract.md §10: nothing new queues once shutdown started
            raise self.fail(Unavailable(SHUTTING_DOWN))
        ticket = Ticket(
            self.request_id,
            identity.priority,
            identity.source.value,
            model,
            who=identity.who,
            endpoint=self.endpoint,
            principal=self.principal,
            limits=limit_subjects(identity),
            max_parallel=max_parallel,
            conversation=conversation,
        )
        self.task = asyncio.ensure_future(self.gw.scheduler.acquire(ticket))
        return self.task

    def queue_position(self) -> int | None:
        """Its place in the queue (1 = next), or None when it is not waiting (never queued, or served)."""
        if self.task is None or self.task.done():
            return None
        return self.gw.scheduler.position(self.request_id)

    def queue_eta(self) -> int | None:
        """The scheduler's estimate of seconds until dispatch, or None (not waiting, or no estimate yet)."""
        if self.task is None or self.task.done():
            return None
        return self.gw.scheduler.eta(self.request_id)

    async def wait_for_slot(self, task: asyncio.Task[Grant]) -> Grant:
        """The grant, or the scheduler's refusal as a :class:`ProxyError`."""
        try:
            # Awaiting the task also cancels it if this request is cancelled.
            grant = await task
        except SchedulerError as exc:
            raise self.fail(as_proxy_error(exc)) from None
        self.grant = grant
        self.slot_at = time.monotonic()
        self.stage = "waiting_upstream"
        self.gw.live.dispatched(self.request_id, grant.ticket.source, grant.waited * 1000)
        grant.on_cancel(self._cancelled)
        return grant

    def _cancelled(self, reason: str) -> None:
        """An administrator cancelled this active request: its relay ends with ``reason`` in-band."""
        self.cancelled = ProxyError(503, reason)
        if self.exchange is not None:
            self.exchange.abort(self.cancelled)
        elif self._opening is not None:
            # Still waiting for Ollama's first byte: close the upstream now, not when it answers (§16).
            self._opening.cancel()

    async def open(
        self, base_url: str, method: str, path: str, content: Content, headers: list[tuple[str, str]]
    ) -> Exchange:
        """Send the request upstream and wait for Ollama's status line."""
        self.stage = "waiting_upstream"
        self.backend_url = base_url
        self._opening = asyncio.ensure_future(
            self.gw.upstream.open(base_url, method, path, content=content, headers=headers)
        )
        try:
            self.exchange = await self._opening
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self.cancelled is None or (task is not None and task.cancelling()):
                raise  # the client left (Quart cancels the handler): not an administrator's cancel
            raise self.fail(self.cancelled) from None
        except ProxyError as exc:
            raise self.fail(exc) from None
        finally:
            self._opening = None
        self.stage = "streaming"
        self.ttfb_ms = (time.monotonic() - self.arrived) * 1000
        if self.cancelled is not None:  # cancelled while Ollama was still to answer
            self.exchange.abort(self.cancelled)
        return self.exchange

    async def read(self, exchange: Exchange) -> bytes:
        """A non-streamed answer, whole."""
        try:
            data = await exchange.read()
        except ProxyError as exc:
            raise self.fail(exc) from None
        self._feed(data)
        self.complete(exchange.status_code)
        return data

    async def relay(self, exchange: Exchange) -> AsyncIterator[bytes]:
        """Ollama's stream, chunk for chunk; ends the request (and frees its slot) when it ends."""
        try:
            async for chunk in exchange.stream(self.route.dialect):
                self._feed(chunk)
                yield chunk
            # A stream that broke ended with an in-band error: its status is the failure's.
            if exchange.failure is not None:
                self.fail(exchange.failure)
            else:
                self.complete(exchange.status_code)
        finally:
            await self.close()

    def _feed(self, data: bytes) -> None:
        if self.usage is not None:
            self.usage.feed(data)

    # --- the end ---------------------------------------------------------------------------

    def complete(self, status: int) -> None:
        """The answer went through (Ollama's 4xx included): nothing broke on our side."""
        self.status = status
        self.stage = None

    def fail(self, error: ProxyError) -> ProxyError:
        """Remember how the request ended and hand the error back for raising."""
        self.status, self.error = error.status, error.message
        return error

    @property
    def wait_ms(self) -> int:
        """Milliseconds spent queued (so far, while still queued; 0 if never queued)."""
        if self.task is None:
            return 0
        if self.grant is not None:
            return round(self.grant.waited * 1000)
        return round((time.monotonic() - self.arrived) * 1000)

    async def close(self) -> None:
        """Release everything this request holds and write its row; safe to call any number of times."""
        if self.closed:
            return
        self.closed = True
        task = self.task
        if task is not None and not task.done():
            # Still queued: the scheduler drops the ticket when its task is cancelled.
            task.cancel()
        elif task is not None and not task.cancelled() and task.exception() is None:
            self.grant = task.result()
        try:
            if self.exchange is not None:
                try:
                    await self.exchange.aclose()
                except Exception as exc:  # the answer is over either way; the slot and row must follow
                    log.info("request %s: closing the upstream exchange failed: %r", self.request_id, exc)
        finally:
            if self.grant is not None:
                # GPU time: from dispatch to the last byte or the failure (docs/contract.md §13).
                held_from = self.slot_at if self.slot_at is not None else time.monotonic()
                self.gpu_ms = (time.monotonic() - held_from) * 1000
                self.gw.scheduler.release(self.grant)
            live = self._route is not None and self._route.lane is Lane.QUEUED
            self.gw.finish(self.record(), live=live, identity=self.identity)

    def record(self) -> RequestRecord:
        """The request-log row of this request as it stands (the only place one is filled)."""
        identity = self.identity
        backend = self.grant.backend.url if self.grant is not None else self.backend_url
        # docs/contract.md §16: charged as delivered, also when the client left or the stream broke.
        tokens = self.usage.delivered() if self.usage is not None else (None, None)
        return RequestRecord(
            request_id=self.request_id,
            method=self.method,
            endpoint=self.endpoint,
            status=self.status or CLIENT_LEFT,
            created_at=self.created_at,
            source=identity.source.value if identity else None,
            api_key_id=identity.api_key_id if identity else None,
            whitelist_entry_id=identity.whitelist_entry_id if identity else None,
            user_id=identity.user_id if identity else None,
            client_ip=self.client_ip,
            model=self.model,
            backend=redact_url(backend) if backend is not None else None,
            # A client that left before its request was queued or sent on was still waiting on us.
            stage=self.stage or ("queued" if self.status is None else None),
            error=self.error,
            queue_wait_ms=self.grant.waited * 1000 if self.grant is not None else None,
            ttfb_ms=self.ttfb_ms,
            duration_ms=(time.monotonic() - self.arrived) * 1000,
            prompt_tokens=tokens[0],
            completion_tokens=tokens[1],
            key_prefix=self._refused_key_prefix(),
            end_user=identity.end_user if identity else None,
            gpu_ms=self.gpu_ms,
            load_ms=self.usage.load_ms() if self.usage is not None else None,
            model_loaded=model_loaded(self.usage.final_line())
            if self.usage is not None and self.usage.kind == "ollama"
            else None,
            adjusted=bool(self.adjusted),
        )

    def _refused_key_prefix(self) -> str | None:
        # Only a refusal keeps it: an accepted key is named by api_key_id.
        if self.identity is not None or self.principal is None:
            return None
        key = self.principal.credentials.api_key
        return None if key is None else presented_key_prefix(key)


def limit_subjects(identity: Identity) -> tuple[LimitSubject, ...]:
    """The queue limits of every subject bounding the identity's requests (docs/contract.md §16).

    For an end user behind a shared key that is the key, so the key's limits bound all its end users
    together while fair share goes per end user (``identity.who``); a personal key adds itself (§14).
    """
    return tuple(
        LimitSubject(who, policy.max_queued, policy.max_concurrent) for who, policy in identity.limit_subjects
    )
