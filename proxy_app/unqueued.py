"""Requests that never queue: the fast lane (model lists, show, version), model management, the account.

They go straight to a healthy backend. ``/api/tags``, ``/api/ps`` and
``/v1/models`` combine the lists of every healthy backend; with one backend
its answer passes through byte for byte.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from quart import Response

from common.policies import normalise_model_name
from proxy_app.backends import BackendState
from proxy_app.bodies import model_of
from proxy_app.errors import BadGateway, ProxyError, Unavailable
from proxy_app.gateway import Gateway
from proxy_app.headers import returned_headers
from proxy_app.routes import Merge, Route, wants_stream
from proxy_app.upstream import Exchange

if TYPE_CHECKING:  # the request object calls these modules; they only name it
    from proxy_app.bodies import Content
    from proxy_app.proxied import ProxiedRequest

# Model management with several backends goes to the first healthy one unless
# the request names one (its URL exactly as in OLLAMA_URLS) in this header.
BACKEND_HEADER = "X-Seadragon-Backend"


async def serve_unqueued(
    proxied: ProxiedRequest, content: Content, headers: list[tuple[str, str]], fields: dict
) -> Response:
    """Relay a fast-lane, model-management or account request to one backend (or merge the lists)."""
    route = proxied.route
    if route.merge is not Merge.NONE and route.method == "GET":
        backends = proxied.gw.healthy_backends()
        if len(backends) > 1:
            response = await _merged(proxied.gw, route, backends, headers)
            proxied.complete(response.status_code)
            return response
    backend = _choose(proxied.gw, route, route.model or model_of(fields), headers)
    exchange = await proxied.open(backend.url, route.method, route.upstream_path, content, headers)
    returned = returned_headers(exchange.response.headers)
    if not 200 <= exchange.status_code < 300:
        error, body = await exchange.refusal()
        if error is not None:
            raise error
        proxied.complete(exchange.status_code)
        return Response(body, status=exchange.status_code, headers=returned)
    if wants_stream(route, fields):
        # A pull, push or create: its row says how the stream really ended.
        response = Response(proxied.relay(exchange), status=exchange.status_code, headers=returned)
        response.timeout = None  # a model pull may take an hour
        return response
    return Response(await proxied.read(exchange), status=exchange.status_code, headers=returned)


def _choose(gw: Gateway, route: Route, model: str | None, headers: list[tuple[str, str]]) -> BackendState:
    healthy = gw.healthy_backends()
    if not healthy:
        raise Unavailable("no healthy Ollama backend")
    if route.admin_only:
        named = next((value for name, value in headers if name.lower() == BACKEND_HEADER.lower()), None)
        if named:
            for backend in healthy:
                if backend.url == named.rstrip("/"):
                    return backend
            raise Unavailable(f"{BACKEND_HEADER}: no healthy backend with that URL")
        return healthy[0]
    candidates = gw.pool.candidates(model) or healthy
    # Metadata calls go where a generation is least likely to be running.
    return max(candidates, key=lambda backend: backend.free)


async def _merged(gw: Gateway, route: Route, backends: list[BackendState], headers: list) -> Response:
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
    return normalise_model_name(name) if isinstance(name, str) else None


async def _fetch_json(gw: Gateway, backend: BackendState, path: str, headers: list) -> dict | None:
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
