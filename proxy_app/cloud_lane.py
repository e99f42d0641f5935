"""How an allowed cloud-model request is served (docs/contract.md §3; who may: proxy_app/cloud_policy.py).

A cloud model runs on ollama.com, not on the GPU: the request never takes a
GPU slot and never waits behind GPU work. It is relayed at once, like the
fast lane, and answered like any generation (:func:`proxy_app.queued.answer`);
its one request-log row is written by ``ProxiedRequest.close`` as for every
request (its model says it was a cloud request; /metrics counts it apart).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Response

from proxy_app.bodies import Content
from proxy_app.errors import Unavailable
from proxy_app.queued import answer
from proxy_app.routes import wants_stream

if TYPE_CHECKING:  # the request object calls this module; it only names it
    from proxy_app.proxied import ProxiedRequest


async def serve_cloud(
    proxied: ProxiedRequest, content: Content, headers: list[tuple[str, str]], fields: dict
) -> Response:
    """Relay an allowed cloud request at once: no slot, no queue."""
    backends = proxied.gw.pool.candidates(proxied.model)
    if not backends:
        raise Unavailable("no healthy Ollama backend")
    backend = max(backends, key=lambda candidate: candidate.free)  # the one least busy with GPU work
    route = proxied.route
    exchange = await proxied.open(backend.url, "POST", route.upstream_path, content, headers)
    return await answer(proxied, exchange, wants_stream(route, fields))
