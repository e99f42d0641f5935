"""Requests that never queue: the fast lane (model lists, show, version) and model management.

They go straight to a healthy backend. ``/api/tags``, ``/api/ps`` and
``/v1/models`` combine the lists of every healthy backend; with one backend
its answer passes through byte for byte.
"""

from __future__ import annotations

import asyncio
import json

from quart import Request, Response

from proxy_app.backends import BackendState, model_key
from proxy_app.bodies import model_of, read_request_body
from proxy_app.errors import BadGateway, ProxyError, Unavailable
from proxy_app.gateway import Gateway, on_request_end
from proxy_app.routes import Merge, Route, wants_stream
from proxy_app.upstream import Exchange, forward_headers, returned_headers

# Model management with several backends goes to the first healthy one unless
# the request names one (its URL exactly as in OLLAMA_URLS) in this header.
BACKEND_HEADER = "X-Seadragon-Backend"


async def serve_direct(gw: Gateway, route: Route, request: Request) -> Response:
    """Relay a fast-lane or model-management request to one backend (or merge the lists)."""
    content, payload = await read_request_body(route, request, gw.settings.max_body)
    if route.merge is not Merge.NONE and route.method == "GET":
        backends = gw.healthy_backends()
        if len(backends) > 1:
            return await _merged(gw, route, backends, request)
    backend = _choose(gw, route, route.model or model_of(payload), request)
    assert gw.upstream is not None
    exchange = await gw.upstream.open(
        backend.url,
        route.method,
        route.upstream_path,
        content=content,
        headers=forward_headers(request.headers.items()),
    )
    on_request_end(request.scope, exchange.aclose)
    headers = returned_headers(exchange.response.headers)
    if not 200 <= exchange.status_code < 300:
        error, body = await exchange.refusal()
        if error is not None:
            raise error
        return Response(body, status=exchange.status_code, headers=headers)
    if wants_stream(route, payload):
        response = Response(exchange.stream(), status=exchange.status_code, headers=headers)
        response.timeout = None  # a model pull may take an hour
        return response
    return Response(await exchange.read(), status=exchange.status_code, headers=headers)


def _choose(gw: Gateway, route: Route, model: str | None, request: Request) -> BackendState:
    healthy = gw.healthy_backends()
    if not healthy:
        raise Unavailable("no healthy Ollama backend")
    if route.admin_only:
        named = request.headers.get(BACKEND_HEADER)
        if named:
            for backend in healthy:
                if backend.url == named.rstrip("/"):
                    return backend
            raise Unavailable(f"{BACKEND_HEADER}: no healthy backend with that URL")
        return healthy[0]
    assert gw.pool is not None
    candidates = gw.pool.candidates(model) or healthy
    # Metadata calls go where a generation is least likely to be running.
    return max(candidates, key=lambda backend: backend.free)


async def _merged(gw: Gateway, route: Route, backends: list[BackendState], request: Request) -> Response:
    headers = forward_headers(request.headers.items())
    answers = await asyncio.gather(
        *(_fetch_json(gw, backend, route.upstream_path, headers) for backend in backends),
        return_exceptions=True,
    )
    lists = [answer for answer in answers if isinstance(answer, dict)]
    if not lists:
        raise BadGateway("no backend answered")
    field = route.merge.value
    merged: list = []
    seen: set[str] = set()
    for answer in lists:
        for item in answer.get(field) or []:
            name = _item_name(item, route.merge)
            if name is None or name in seen:
                continue
            seen.add(name)
            merged.append(item)
    body = {"object": "list", "data": merged} if route.merge is Merge.OPENAI_MODELS else {field: merged}
    return Response(json.dumps(body), status=200, content_type="application/json")


def _item_name(item: object, merge: Merge) -> str | None:
    if not isinstance(item, dict):
        return None
    name = item.get("id") if merge is Merge.OPENAI_MODELS else item.get("name") or item.get("model")
    return model_key(name) if isinstance(name, str) else None


async def _fetch_json(gw: Gateway, backend: BackendState, path: str, headers: list) -> dict | None:
    assert gw.upstream is not None
    try:
        exchange: Exchange = await gw.upstream.open(backend.url, "GET", path, content=None, headers=headers)
    except ProxyError:
        return None
    try:
        if exchange.status_code != 200:
            return None
        data = json.loads(await exchange.read())
        return data if isinstance(data, dict) else None
    except (ProxyError, ValueError):
        return None
    finally:
        await exchange.aclose()
