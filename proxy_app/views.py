"""The gateway's HTTP surface: every /api/ and /v1/ request enters through :func:`api`."""

from __future__ import annotations

import uuid

from quart import Blueprint, Response, g, request

from common.sources import ClassificationError
from proxy_app.bodies import read_request_body
from proxy_app.classify import principal_of
from proxy_app.gateway import gateway, on_request_end
from proxy_app.headers import forward_headers
from proxy_app.host_guard import check_host
from proxy_app.pages import browser_root, wants_html
from proxy_app.proxied import ProxiedRequest
from proxy_app.routes import resolve

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
async def index() -> dict | Response:
    """Who answers here; a browser is sent on to the chat or the login page (§9)."""
    if not wants_html(request):
        return {"message": "Seadragon LLM Server"}
    try:
        principal = principal_of(request, gateway().settings)
    except ClassificationError:
        return browser_root(signed_in=False)
    # A genuine session names its user: /chat checks that the login is still good (and the
    # gateway's identity cache may not know an account made half a second ago).
    return browser_root(signed_in=principal.session_reference is not None)


@bp.route("/api", methods=ALL_METHODS, defaults={"rest": ""}, provide_automatic_options=False)
@bp.route("/api/<path:rest>", methods=ALL_METHODS, provide_automatic_options=False)
@bp.route("/v1", methods=ALL_METHODS, defaults={"rest": ""}, provide_automatic_options=False)
@bp.route("/v1/<path:rest>", methods=ALL_METHODS, provide_automatic_options=False)
async def api(rest: str) -> Response:
    """The Ollama and OpenAI surface: resolve the route, classify, check permission, then queue or relay."""
    gw = gateway()
    # The row exists before anything can refuse the request: refusals
    # (400/401/403/404/405/413) leave their row too.
    proxied = ProxiedRequest(
        gw,
        request_id=g.request_id,
        method=request.method,
        endpoint=request.path,
        client_ip=(request.scope.get("client") or (None, None))[0],
    )
    on_request_end(request.scope, proxied.close)
    with proxied.recording_errors():
        route = resolve(request.method, request.path)
        proxied.route_to(route)
        principal = principal_of(request, gw.settings)
        proxied.presented(principal)
        identity = await gw.identify(principal)
        g.source = identity.source.value
        proxied.admit(identity, principal)
        check_host(identity, principal, request.headers.get("Host"), gw.settings)  # DNS rebinding
        proxied.name_end_user(request.headers.get)
        content = await read_request_body(route, request, gw.settings.max_body, gw.settings.body_timeout)
    return await proxied.serve(content, forward_headers(request.headers.items()))
