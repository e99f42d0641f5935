"""CORS for exactly the configured origins, with credentials; an unlisted origin is never echoed."""

from __future__ import annotations

from quart import Quart, Response, request

from proxy_app.errors import json_error

ALLOWED_METHODS = "GET, POST, DELETE, HEAD, OPTIONS"
EXPOSED_HEADERS = "X-Request-ID, X-Seadragon-Source, X-Seadragon-Queue-Wait, Retry-After"
PREFLIGHT_MAX_AGE = "600"  # seconds a browser may cache a preflight answer


def normalise_origin(origin: str) -> str:
    """Origins compare case-insensitively and without a trailing slash."""
    return origin.strip().lower().rstrip("/")


def install_cors(app: Quart, origins: tuple[str, ...]) -> None:
    """Answer preflights and add CORS headers for the listed origins only."""
    allowed = frozenset(normalise_origin(origin) for origin in origins)

    def is_allowed(origin: str | None) -> bool:
        return bool(origin) and normalise_origin(origin) in allowed

    @app.before_request
    async def preflight() -> Response | None:
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return None
        origin = request.headers.get("Origin")
        if not is_allowed(origin):
            return json_error(403, "origin not allowed")
        response = Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
        # The origin is trusted; let it send whatever headers its client library needs.
        requested = request.headers.get("Access-Control-Request-Headers")
        if requested:
            response.headers["Access-Control-Allow-Headers"] = requested
        response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
        return response

    @app.after_request
    async def cors_headers(response: Response) -> Response:
        origin = request.headers.get("Origin")
        response.vary.add("Origin")
        if is_allowed(origin):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        return response
