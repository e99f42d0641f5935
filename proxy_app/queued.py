"""Queued generations: wait for a slot, relay to Ollama, give the slot back.

The :class:`~proxy_app.proxied.ProxiedRequest` holds the ticket, slot and
exchange; its ``close`` runs however the request ends and is the only place a
slot is released. Streams that must wait get their headers early (SSE always,
native streams with ``EARLY_HEADERS``); errors after that point travel in-band.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from quart import Response

from proxy_app.bodies import model_of
from proxy_app.conversations import conversation_key
from proxy_app.errors import ProxyError
from proxy_app.headers import returned_headers
from proxy_app.model_profiles import adjusted_headers, apply_profile, profile_for
from proxy_app.routes import wants_stream
from proxy_app.scheduler import Grant
from proxy_app.upstream import Exchange, error_message

if TYPE_CHECKING:  # the request object calls these modules; they only name it
    from proxy_app.bodies import Content
    from proxy_app.proxied import ProxiedRequest

EARLY_GRACE = 0.1  # seconds a stream may take to get a slot before its headers go out early
POSITION_POLL = 0.5  # seconds between queue-position checks for SSE comments
COMMENT_REPEAT = 10.0  # seconds after which an unchanged position is repeated (keeps proxies awake)


async def serve_queued(
    proxied: ProxiedRequest, content: Content, headers: list[tuple[str, str]], fields: dict
) -> Response:
    """Queue a generation and answer with Ollama's response (or a queue error)."""
    if not isinstance(content, bytes):
        raise TypeError("a queued request's body is read whole before it queues")
    route = proxied.route
    stream = wants_stream(route, fields)
    model = model_of(fields)
    content = apply_profile(proxied, content, fields, model)  # docs/contract.md §12
    max_parallel = profile_for(proxied.gw, model).max_parallel
    # A conversation's key only matters where there is a backend to stick to (docs/contract.md §12).
    sticky = proxied.gw.settings.sticky_max_delay > 0 and len(proxied.gw.pool.backends) > 1
    conversation = conversation_key(route.upstream_path, fields, headers, model) if sticky else None
    task = proxied.enqueue(model, max_parallel=max_parallel, conversation=conversation)
    sse = stream and route.dialect.sse
    if stream and (sse or proxied.gw.settings.early_headers):
        done, _ = await asyncio.wait({task}, timeout=EARLY_GRACE)
        if not done:
            return early_stream(proxied, task, content, headers, sse=sse)
    try:
        grant = await proxied.wait_for_slot(task)
        return await answer(proxied, await _open(proxied, grant, content, headers), stream)
    except ProxyError:
        await proxied.close()  # free the slot before the error goes out
        raise


async def _open(proxied: ProxiedRequest, grant: Grant, content: bytes, headers: list) -> Exchange:
    return await proxied.open(grant.backend.url, "POST", proxied.route.upstream_path, content, headers)


async def answer(proxied: ProxiedRequest, exchange: Exchange, stream: bool) -> Response:
    """Ollama's answer with the gateway's headers: streamed, whole, or its 4xx as it was."""
    returned = [
        *returned_headers(exchange.response.headers),
        ("X-Seadragon-Queue-Wait", str(proxied.wait_ms)),
        *adjusted_headers(proxied),
    ]
    if not 200 <= exchange.status_code < 300:
        try:
            error, error_body = await exchange.refusal()
        except ProxyError as exc:
            raise proxied.fail(exc) from None
        if error is not None:
            raise proxied.fail(error)
        proxied.complete(exchange.status_code)  # Ollama's 4xx passes through with its body
        return Response(error_body, status=exchange.status_code, headers=returned)
    if stream:
        response = Response(proxied.relay(exchange), status=exchange.status_code, headers=returned)
        response.timeout = None  # Quart's RESPONSE_TIMEOUT would cut a long stream silently
        return response
    return Response(await proxied.read(exchange), status=exchange.status_code, headers=returned)


def early_stream(
    proxied: ProxiedRequest, task: asyncio.Task[Grant], content: bytes, headers: list, *, sse: bool
) -> Response:
    """A 200 stream whose headers go out now, while the request still waits for a slot."""
    content_type = "text/event-stream" if sse else "application/x-ndjson"
    early = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **dict(adjusted_headers(proxied))}
    body = _early_body(proxied, task, content, headers, sse)
    response = Response(body, status=200, content_type=content_type, headers=early)
    response.timeout = None
    return response


async def _early_body(
    proxied: ProxiedRequest, task: asyncio.Task[Grant], content: bytes, headers: list, sse: bool
) -> AsyncIterator[bytes]:
    try:
        if sse:
            async for comment in position_comments(proxied):
                yield comment
        try:
            grant = await proxied.wait_for_slot(task)
            exchange = await _open(proxied, grant, content, headers)
            if not 200 <= exchange.status_code < 300:
                raise await _refusal_in_band(exchange)
        except ProxyError as exc:
            proxied.fail(exc)
            yield proxied.route.dialect.inband_error(exc.message, status=exc.status)
            return
        async for chunk in proxied.relay(exchange):
            yield chunk
    finally:
        await proxied.close()


async def _refusal_in_band(exchange: Exchange) -> ProxyError:
    """Ollama's non-2xx answer as the error line of a stream whose 200 is already out."""
    error, body = await exchange.refusal()
    if error is not None:
        return error
    status = exchange.status_code
    return ProxyError(status, error_message(body) or f"Ollama answered HTTP {status}")


async def position_comments(proxied: ProxiedRequest) -> AsyncIterator[bytes]:
    """The dialect's ``: queued position=N eta=S`` whenever either changes (and now and then regardless)."""
    task = proxied.task
    if task is None:
        return  # not queued
    scheduler = proxied.gw.scheduler
    last: tuple[int, int | None] | None = None
    said_at = 0.0
    while not task.done():
        position = scheduler.position(proxied.request_id)
        eta = scheduler.eta(proxied.request_id)
        now = time.monotonic()
        if position is not None and ((position, eta) != last or now - said_at >= COMMENT_REPEAT):
            last, said_at = (position, eta), now
            yield proxied.route.dialect.queue_comment(position, eta)  # docs/contract.md §8: whole seconds
        await asyncio.wait({task}, timeout=POSITION_POLL)
