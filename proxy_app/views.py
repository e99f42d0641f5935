"""The gateway's HTTP surface: every /api/ and /v1/ request enters through :func:`api`."""

from __future__ import annotations

import time
import uuid

from quart import Blueprint, Response, g, request

from common.models import utcnow
from common.sources import ClassificationError
from proxy_app.classify import identify, principal_of
from proxy_app.cloud_policy import admin_or_whitelisted
from proxy_app.direct import serve_direct
from proxy_app.errors import Forbidden, ProxyError
from proxy_app.gateway import gateway, on_request_end
from proxy_app.queued import CLIENT_LEFT, serve_queued
from proxy_app.routes import Lane, resolve
from proxy_app.stats import RequestRecord

bp = Blueprint("gateway", __name__)

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@bp.before_app_request
async def assign_request_id() -> None:
    """Every response carries an ``X-Request-ID`` (the id of its request-log row)."""
    g.request_id = uuid.uuid4().hex


@bp.after_app_request
async def identify_response(response: Response) -> Response:
    """Add ``X-Request-ID`` and, once known, ``X-Seadragon-Source``."""
    response.headers["X-Request-ID"] = g.get("request_id", "")
    source = g.get("source")
    if source:
        response.headers["X-Seadragon-Source"] = source
    return response


@bp.get("/")
async def index() -> dict:
    """Who answers here."""
    return {"message": "Seadragon LLM Server"}


@bp.route("/api", methods=ALL_METHODS, defaults={"rest": ""}, provide_automatic_options=False)
@bp.route("/api/<path:rest>", methods=ALL_METHODS, provide_automatic_options=False)
@bp.route("/v1", methods=ALL_METHODS, defaults={"rest": ""}, provide_automatic_options=False)
@bp.route("/v1/<path:rest>", methods=ALL_METHODS, provide_automatic_options=False)
async def api(rest: str) -> Response:
    """The Ollama and OpenAI surface: resolve the route, classify, then queue or relay."""
    arrived = time.monotonic()
    gw = gateway()
    peer = (request.scope.get("client") or (None, None))[0]
    # The record exists before anything can refuse the request: refusals
    # (400/401/403/404/413) leave their row too.
    record = RequestRecord(
        request_id=g.request_id,
        method=request.method,
        endpoint=request.path,
        status=CLIENT_LEFT,
        created_at=utcnow(),
        client_ip=peer,
    )
    queued = False

    async def log_request() -> None:
        if record.duration_ms is None:
            record.duration_ms = (time.monotonic() - arrived) * 1000
        gw.finish(record, live=queued)

    on_request_end(request.scope, log_request)
    try:
        route = resolve(request.method, request.path)
        record.endpoint, record.model = route.name, route.model
        principal = principal_of(request, gw.settings)
        record.client_ip = str(principal.client_ip) if principal.client_ip is not None else None
        await gw.cache.learn(principal.credentials)
        identity = identify(principal, gw.cache.snapshot, gw.settings)
        g.source = record.source = identity.source.value
        record.api_key_id = identity.api_key_id
        record.whitelist_entry_id = identity.whitelist_entry_id
        record.user_id = identity.user_id
        if identity.api_key_id is not None:
            gw.cache.touch_key(identity.api_key_id)
        queued = route.lane is Lane.QUEUED
        if route.admin_only and not admin_or_whitelisted(identity):
            raise Forbidden(route.admin_only)
        if queued:
            response = await serve_queued(gw, route, identity, principal, request, record, arrived)
        else:
            response = await serve_direct(gw, route, request)
    except ProxyError as exc:
        record.status, record.error = exc.status, exc.message
        raise
    except ClassificationError as exc:
        record.status, record.error = exc.status, exc.message
        raise
    if not queued:
        # A queued request's record is kept by its Flight, which sees how the stream ended.
        record.status = response.status_code
        record.stage = None
    return response
