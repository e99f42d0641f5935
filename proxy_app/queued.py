"""Queued generations: wait for a slot, relay to Ollama, give the slot back.

A :class:`Flight` owns one request's ticket, slot and upstream exchange from
arrival to the last byte. Its :meth:`Flight.close` runs however the request
ends — completion, error, or a client that left while queued or mid-stream —
and is the only place a slot is released.

Streams that must wait get their headers early (SSE always, native streams
with ``EARLY_HEADERS``); errors after that point travel in-band.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from quart import Request, Response

from common.sources import Identity
from proxy_app.bodies import model_of, read_request_body
from proxy_app.classify import Principal
from proxy_app.cloud_lane import serve_cloud
from proxy_app.cloud_policy import check_cloud_access, is_cloud_model
from proxy_app.errors import ProxyError
from proxy_app.gateway import Gateway, on_request_end
from proxy_app.routes import Route, wants_stream
from proxy_app.scheduler import Grant, SchedulerError, Ticket
from proxy_app.stats import RequestRecord
from proxy_app.upstream import (
    Exchange,
    error_message,
    forward_headers,
    inband_error,
    redact_url,
    returned_headers,
)
from proxy_app.usage_parse import UsageTracker

EARLY_GRACE = 0.1  # seconds a stream may take to get a slot before its headers go out early
POSITION_POLL = 0.5  # seconds between queue-position checks for SSE comments
COMMENT_REPEAT = 10.0  # seconds after which an unchanged position is repeated (keeps proxies awake)
CLIENT_LEFT = 499


def scheduler_refusal(error: SchedulerError) -> ProxyError:
    """A scheduler error as the HTTP answer it stands for."""
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else {}
    return ProxyError(error.status, error.message, headers)


class Flight:
    """One queued request: its ticket, its slot and its upstream exchange."""

    def __init__(
        self,
        gw: Gateway,
        *,
        request_id: str,
        route: Route,
        identity: Identity,
        principal: Principal,
        model: str | None,
        body: bytes,
        headers: list[tuple[str, str]],
        record: RequestRecord,
        arrived: float,
    ) -> None:
        self.gw = gw
        self.route = route
        self.identity = identity
        self.principal = principal
        self.body = body
        self.headers = headers
        self.ticket = Ticket(request_id, identity.priority, identity.source.value, model)
        self.record = record
        self.record.model = model
        self.arrived = arrived
        self.usage = UsageTracker(route.dialect.usage_kind)
        self.task: asyncio.Task[Grant] | None = None
        self.grant: Grant | None = None
        self.exchange: Exchange | None = None
        self.status: int | None = None
        self.stage: str | None = "queued"  # where it ended if it did not finish well
        self.error: str | None = None
        self.closed = False

    @property
    def request_id(self) -> str:
        """The request's id (also its ticket's)."""
        return self.ticket.request_id

    def enqueue(self) -> None:
        """Ask the scheduler for a slot (in the background; see :meth:`wait_for_slot`)."""
        assert self.gw.scheduler is not None
        self.gw.waiting_principals[self.request_id] = self.principal
        self.task = asyncio.ensure_future(self.gw.scheduler.acquire(self.ticket))

    async def granted_soon(self) -> bool:
        """True if a slot came at once; False if the request is waiting in the queue."""
        assert self.task is not None
        done, _ = await asyncio.wait({self.task}, timeout=EARLY_GRACE)
        return bool(done)

    async def wait_for_slot(self) -> Grant:
        """The grant, or the scheduler's refusal as a :class:`ProxyError`."""
        assert self.task is not None
        try:
            # Awaiting the task also cancels it if this request is cancelled.
            self.grant = await self.task
        except SchedulerError as exc:
            raise self.fail(scheduler_refusal(exc)) from None
        finally:
            self.gw.waiting_principals.pop(self.request_id, None)
        self.stage = "waiting_upstream"
        self.record.queue_wait_ms = self.grant.waited * 1000
        self.record.backend = redact_url(self.grant.backend.url)
        self.gw.live.dispatched(self.request_id, self.ticket.source, self.record.queue_wait_ms)
        return self.grant

    async def open(self) -> Exchange:
        """Send the request to the granted backend and wait for its status line."""
        assert self.grant is not None and self.gw.upstream is not None
        try:
            self.exchange = await self.gw.upstream.open(
                self.grant.backend.url,
                "POST",
                self.route.upstream_path,
                content=self.body,
                headers=self.headers,
            )
        except ProxyError as exc:
            raise self.fail(exc) from None
        self.stage = "streaming"
        self.record.ttfb_ms = (time.monotonic() - self.arrived) * 1000
        return self.exchange

    async def read(self) -> bytes:
        """A non-streamed answer, whole."""
        assert self.exchange is not None
        try:
            data = await self.exchange.read()
        except ProxyError as exc:
            raise self.fail(exc) from None
        self.usage.feed(data)
        self.complete(self.exchange.status_code)
        return data

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
        """Milliseconds spent queued (so far, while still queued)."""
        if self.grant is not None:
            return round(self.grant.waited * 1000)
        return round((time.monotonic() - self.arrived) * 1000)

    async def relay(self) -> AsyncIterator[bytes]:
        """Ollama's stream, chunk for chunk; the slot is freed when it ends."""
        assert self.exchange is not None
        try:
            async for chunk in self.exchange.stream(self.route.dialect):
                self.usage.feed(chunk)
                yield chunk
            failure = self.exchange.failure
            if failure is not None:
                self.fail(failure)
            else:
                self.complete(self.exchange.status_code)
        finally:
            await self.close()

    async def close(self) -> None:
        """Release everything this request holds; safe to call any number of times."""
        if self.closed:
            return
        self.closed = True
        self.gw.waiting_principals.pop(self.request_id, None)
        task = self.task
        if task is not None and not task.done():
            # Still queued: the scheduler drops the ticket when its task is cancelled.
            task.cancel()
        elif task is not None and not task.cancelled() and task.exception() is None:
            self.grant = task.result()
        if self.status is None:
            self.status = CLIENT_LEFT
        try:
            if self.exchange is not None:
                with contextlib.suppress(Exception):
                    await self.exchange.aclose()
        finally:
            if self.grant is not None and self.gw.scheduler is not None:
                self.gw.scheduler.release(self.grant)
            self._fill_record()

    def _fill_record(self) -> None:
        record = self.record
        record.status = self.status or CLIENT_LEFT
        record.stage = self.stage
        record.error = self.error
        record.duration_ms = (time.monotonic() - self.arrived) * 1000
        if self.stage is None:
            record.prompt_tokens, record.completion_tokens = self.usage.usage()


async def serve_queued(
    gw: Gateway,
    route: Route,
    identity: Identity,
    principal: Principal,
    request: Request,
    record: RequestRecord,
    arrived: float,
) -> Response:
    """Queue a generation and answer with Ollama's response (or a queue error)."""
    body, payload = await read_request_body(route, request, gw.settings.max_body)
    assert isinstance(body, bytes)  # queued routes are read whole (JSON or multipart)
    model = model_of(payload)
    if model is not None and is_cloud_model(model):
        check_cloud_access(gw.settings, identity)  # docs/contract.md §3: never on the GPU, never queued
        return await serve_cloud(gw, route, request, record, body, payload, model)
    stream = wants_stream(route, payload)
    flight = Flight(
        gw,
        request_id=record.request_id,
        route=route,
        identity=identity,
        principal=principal,
        model=model,
        body=body,
        headers=forward_headers(request.headers.items()),
        record=record,
        arrived=arrived,
    )
    on_request_end(request.scope, flight.close)
    flight.enqueue()
    sse = stream and route.name.startswith("/v1/")
    if stream and (sse or gw.settings.early_headers) and not await flight.granted_soon():
        return early_stream(flight, sse=sse)

    try:
        await flight.wait_for_slot()
        return await _answer(flight, stream)
    except ProxyError:
        await flight.close()  # free the slot before the error goes out
        raise


async def _answer(flight: Flight, stream: bool) -> Response:
    """Ollama's answer with the gateway's headers: streamed, whole, or its 4xx as it was."""
    exchange = await flight.open()
    headers = [*returned_headers(exchange.response.headers), ("X-Seadragon-Queue-Wait", str(flight.wait_ms))]
    if not 200 <= exchange.status_code < 300:
        try:
            error, error_body = await exchange.refusal()
        except ProxyError as exc:
            raise flight.fail(exc) from None
        if error is not None:
            raise flight.fail(error)
        flight.complete(exchange.status_code)  # Ollama's 4xx passes through with its body
        return Response(error_body, status=exchange.status_code, headers=headers)
    if stream:
        response = Response(flight.relay(), status=exchange.status_code, headers=headers)
        response.timeout = None  # Quart's RESPONSE_TIMEOUT would cut a long stream silently
        return response
    return Response(await flight.read(), status=exchange.status_code, headers=headers)


def early_stream(flight: Flight, *, sse: bool) -> Response:
    """A 200 stream whose headers go out now, while the request still waits for a slot."""
    content_type = "text/event-stream" if sse else "application/x-ndjson"
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    response = Response(_early_body(flight, sse), status=200, content_type=content_type, headers=headers)
    response.timeout = None
    return response


async def _early_body(flight: Flight, sse: bool) -> AsyncIterator[bytes]:
    try:
        if sse:
            async for comment in _position_comments(flight):
                yield comment
        try:
            await flight.wait_for_slot()
            exchange = await flight.open()
            if not 200 <= exchange.status_code < 300:
                raise await _refusal_in_band(exchange)
        except ProxyError as exc:
            flight.fail(exc)
            yield inband_error(
                exc.message, sse=sse, tail=b"", dialect=flight.route.dialect, status=exc.status
            )
            return
        async for chunk in flight.relay():
            yield chunk
    finally:
        await flight.close()


async def _refusal_in_band(exchange: Exchange) -> ProxyError:
    """Ollama's non-2xx answer as the error line of a stream whose 200 is already out."""
    error, body = await exchange.refusal()
    if error is not None:
        return error
    status = exchange.status_code
    return ProxyError(status, error_message(body) or f"Ollama answered HTTP {status}")


async def _position_comments(flight: Flight) -> AsyncIterator[bytes]:
    """``: queued position=N`` whenever the place changes (and now and then regardless)."""
    assert flight.task is not None and flight.gw.scheduler is not None
    last: int | None = None
    said_at = 0.0
    while not flight.task.done():
        position = flight.gw.scheduler.position(flight.request_id)
        now = time.monotonic()
        if position is not None and (position != last or now - said_at >= COMMENT_REPEAT):
            last, said_at = position, now
            yield flight.route.dialect.queue_comment(position)
        await asyncio.wait({flight.task}, timeout=POSITION_POLL)
