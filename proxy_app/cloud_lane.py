"""How an allowed cloud-model request is served (docs/contract.md §3; who may: proxy_app/cloud_policy.py).

A cloud model runs on ollama.com, not on the GPU: the request never takes a
GPU slot and never waits behind GPU work. It is relayed at once, like the
fast lane, and still leaves its one request-log row (its model says it was a
cloud request; /metrics counts it apart).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from quart import Request, Response

from proxy_app.errors import ProxyError, Unavailable
from proxy_app.gateway import Gateway, on_request_end
from proxy_app.routes import Route, wants_stream
from proxy_app.stats import RequestRecord
from proxy_app.upstream import Exchange, forward_headers, redact_url, returned_headers
from proxy_app.usage_parse import UsageTracker


async def serve_cloud(
    gw: Gateway, route: Route, request: Request, record: RequestRecord, body: bytes, payload: dict, model: str
) -> Response:
    """Relay an allowed cloud request at once (no slot, no queue) and fill its request-log row."""
    assert gw.pool is not None and gw.upstream is not None
    record.model = model
    backends = gw.pool.candidates(model)
    if not backends:
        raise Unavailable("no healthy Ollama backend")
    backend = max(backends, key=lambda b: b.free)
    record.backend = redact_url(backend.url)
    record.stage = "waiting_upstream"
    arrived = time.monotonic()
    forwarded = forward_headers(request.headers.items())
    exchange = await gw.upstream.open(
        backend.url, "POST", route.upstream_path, content=body, headers=forwarded
    )
    on_request_end(request.scope, exchange.aclose)
    record.ttfb_ms = (time.monotonic() - arrived) * 1000
    headers = [*returned_headers(exchange.response.headers), ("X-Seadragon-Queue-Wait", "0")]
    if not 200 <= exchange.status_code < 300:
        error, error_body = await exchange.refusal()
        if error is not None:
            raise error
        _finished(record, exchange.status_code)
        return Response(error_body, status=exchange.status_code, headers=headers)
    usage = UsageTracker(route.dialect.usage_kind)
    if wants_stream(route, payload):
        relay = _relay(exchange, route, record, usage)
        response = Response(relay, status=exchange.status_code, headers=headers)
        response.timeout = None  # a long answer must not be cut by Quart's RESPONSE_TIMEOUT
        return response
    data = await exchange.read()
    usage.feed(data)
    _finished(record, exchange.status_code, usage)
    return Response(data, status=exchange.status_code, headers=headers)


async def _relay(
    exchange: Exchange, route: Route, record: RequestRecord, usage: UsageTracker
) -> AsyncIterator[bytes]:
    record.stage = "streaming"
    async for chunk in exchange.stream(route.dialect):
        usage.feed(chunk)
        yield chunk
    failure: ProxyError | None = exchange.failure
    if failure is not None:
        record.status, record.error = failure.status, failure.message
    else:
        _finished(record, exchange.status_code, usage)


def _finished(record: RequestRecord, status: int, usage: UsageTracker | None = None) -> None:
    record.status, record.stage = status, None
    if usage is not None:
        record.prompt_tokens, record.completion_tokens = usage.usage()
