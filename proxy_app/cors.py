"""CORS for exactly the configured origins, with credentials; an unlisted origin is never echoed.

The headers come from quart-cors (the design card's choice). Two rules stay ours: origins
compare case-insensitively and without a trailing slash (each listed origin becomes an
anchored pattern, so ``https://ok.example.evil`` never passes for ``https://ok.example``),
and a preflight from an unlisted origin is refused with 403 before any view runs.
"""

from __future__ import annotations

import re

from quart import Quart, Response, request
from quart_cors import cors

from proxy_app.errors import json_error

ALLOWED_METHODS = ("GET", "POST", "DELETE", "HEAD", "OPTIONS")
EXPOSED_HEADERS = ("X-Request-ID", "X-Seadragon-Source", "X-Seadragon-Queue-Wait", "Retry-After")
PREFLIGHT_MAX_AGE = 600  # seconds a browser may cache a preflight answer


def normalise_origin(origin: str) -> str:
    """Origins compare case-insensitively and without a trailing slash."""
    return origin.strip().lower().rstrip("/")


def origin_pattern(origin: str) -> re.Pattern[str]:
    """The listed ``origin`` as quart-cors matches it: whole, any case, one trailing slash allowed."""
    return re.compile(re.escape(normalise_origin(origin)) + r"/?\Z", re.IGNORECASE)


def install_cors(app: Quart, origins: tuple[str, ...]) -> None:
    """Answer preflights and add CORS headers for the listed origins only."""
    patterns = [origin_pattern(origin) for origin in origins]

    def is_allowed(origin: str | None) -> bool:
        return bool(origin) and any(pattern.match(origin.strip()) for pattern in patterns)

    @app.before_request
    async def preflight() -> Response | None:
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return None
        if not is_allowed(request.headers.get("Origin")):
            return json_error(403, "origin not allowed")
        return Response(status=204)  # quart-cors adds the Access-Control-* headers

    cors(
        app,
        allow_origin=patterns,
        allow_credentials=True,
        allow_methods=ALLOWED_METHODS,
        # The origin is trusted; let it send whatever headers its client library needs.
        allow_headers=["*"],
        expose_headers=EXPOSED_HEADERS,
        max_age=PREFLIGHT_MAX_AGE,
    )
