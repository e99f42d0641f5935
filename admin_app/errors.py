"""Error pages: HTML for people, JSON for the API; never a traceback."""

from __future__ import annotations

import logging

from flask import Flask, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from admin_app.extensions import db

log = logging.getLogger(__name__)

TITLES = {
    400: "Bad request",
    401: "Sign-in required",
    403: "Forbidden",
    404: "Page not found",
    405: "Method not allowed",
    413: "Request too large",
    429: "Too many requests",
    500: "Something went wrong",
}
MESSAGES = {
    403: "Your account does not have access to this page.",
    404: "There is nothing at this address.",
    500: "The server hit an unexpected error. It has been logged; please try again.",
}


def wants_json() -> bool:
    """API paths answer in JSON; pages answer in HTML."""
    return request.path.startswith(("/api/", "/chat/api/", "/account/api/")) or request.path == "/auth/token"


def _respond(code: int, message: str):
    if wants_json():
        return {"error": message}, code
    title = TITLES.get(code, "Error")
    page = render_template("errors/error.html", code=code, title=title, message=message)
    return page, code


def handle_http(exc: HTTPException):
    """Any HTTP error (404, 405, 413 …) in the caller's format."""
    code = exc.code or 500
    if wants_json():
        return _respond(code, (exc.description or TITLES.get(code, "error")).rstrip("."))
    return _respond(code, MESSAGES.get(code) or exc.description or TITLES.get(code, "Error"))


def handle_csrf(exc: CSRFError):
    """A form or API call without a valid CSRF token."""
    if wants_json():
        return _respond(400, f"CSRF check failed: {exc.description} Send it in the X-CSRFToken header.")
    return _respond(400, "This form has expired or was not sent by this site. Go back, reload and try again.")


def handle_unexpected(exc: Exception):
    """A bug: roll the database session back and answer 500 without details."""
    db.session.rollback()
    if isinstance(exc, HTTPException):
        return handle_http(exc)
    log.exception("unhandled error on %s %s", request.method, request.path)
    return _respond(500, MESSAGES[500] if not wants_json() else "internal server error")


def register_error_handlers(app: Flask) -> None:
    """Install the handlers on ``app``."""
    app.register_error_handler(CSRFError, handle_csrf)
    app.register_error_handler(HTTPException, handle_http)
    app.register_error_handler(InternalServerError, handle_unexpected)
    app.register_error_handler(Exception, handle_unexpected)
