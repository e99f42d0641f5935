"""What a browser gets from the gateway (docs/contract.md §9): ``/`` leads to the chat, 404s are pages.

Other clients keep JSON: ``{"message": ...}`` at ``/`` and ``{"error": "not found"}``
for unknown paths; paths under ``/api/`` and ``/v1/`` always answer JSON.
"""

from __future__ import annotations

from quart import Blueprint, Request, Response, redirect, render_template, request
from werkzeug.exceptions import NotFound

from proxy_app.errors import json_error

bp = Blueprint("pages", __name__)

NOT_FOUND = {"code": 404, "title": "Page not found", "message": "There is nothing at this address."}


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
        page = await render_template("errors/gateway.html", **NOT_FOUND)  # the repository's templates/
        return Response(page, status=404, content_type="text/html; charset=utf-8")
    return json_error(404, "not found")
