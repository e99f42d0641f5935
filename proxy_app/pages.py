"""What a browser gets from the gateway (docs/contract.md §9): ``/`` leads to the chat, 404s are pages.

Other clients keep JSON: ``{"message": ...}`` at ``/`` and ``{"error": "not found"}``
for unknown paths; paths under ``/api/`` and ``/v1/`` always answer JSON.
"""

from __future__ import annotations

from quart import Blueprint, Request, Response, redirect, request
from werkzeug.exceptions import NotFound

from proxy_app.errors import json_error

bp = Blueprint("pages", __name__)

NOT_FOUND_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Page not found · Seadragon Gateway</title>
<link rel="stylesheet" href="/static/css/admin.css"><link rel="stylesheet" href="/static/css/chat.css">
<script src="/static/js/theme.js"></script>
</head><body><main class="container"><section class="error-page">
<p class="error-code">404</p><h1>Page not found</h1>
<p class="lead">There is nothing at this address.</p>
<p><a class="button button-primary" href="/">Go to the start page</a></p>
</section></main></body></html>
"""


def wants_html(req: Request) -> bool:
    """A browser asking for a page: its ``Accept`` lists ``text/html``."""
    return "text/html" in req.headers.get("Accept", "").lower()


def browser_root(signed_in: bool) -> Response:
    """Where a browser opening ``/`` goes: the chat, or the login page (back to the chat after)."""
    return redirect("/chat" if signed_in else "/auth/login?next=%2Fchat")


@bp.app_errorhandler(NotFound)
async def not_found(error: NotFound) -> Response:
    """An HTML page for a browser's unknown path; JSON for API paths and other clients."""
    api = request.path in ("/api", "/v1") or request.path.startswith(("/api/", "/v1/"))
    if wants_html(request) and not api:
        return Response(NOT_FOUND_PAGE, status=404, content_type="text/html; charset=utf-8")
    return json_error(404, "not found")
