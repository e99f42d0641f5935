"""The JSON admin API's blueprint (docs/contract.md §3): authentication, errors, request bodies.

The routes live one module per concern beside this one (``whitelist``, ``tokens``,
``apikeys``, ``users``, ``audit``, ``requests``), each with the JSON shape of its objects,
and call the same service functions as the panel.
"""

from __future__ import annotations

import re

from flask import Blueprint, current_app, g, request
from flask_login import current_user

from admin_app import services
from admin_app.extensions import csrf
from admin_app.identity import BearerRefused, bearer_user

bp = Blueprint("api", __name__, url_prefix="/api/admin")
# CSRF is checked in authenticate(): only for cookie sessions, after 401/403 are settled.
csrf.exempt(bp)


class APIError(Exception):
    """Answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@bp.errorhandler(APIError)
def api_error(exc: APIError):
    """JSON for every refusal raised by this blueprint (and the account API, admin_app/account_api.py)."""
    realm = "seadragon-admin" if request.blueprint == bp.name else "seadragon"
    headers = {"WWW-Authenticate": f'Bearer realm="{realm}"'} if exc.status == 401 else {}
    return {"error": exc.message}, exc.status, headers


@bp.errorhandler(services.ServiceError)
def service_error(exc: services.ServiceError):
    """A service's refusal: 400 naming the field, 404 unknown, 409 duplicate."""
    return {"error": exc.message}, exc.status


@bp.before_request
def authenticate():
    """Admin session (with X-CSRFToken on unsafe methods) or an admin's bearer token."""
    user = signed_in_user("an admin's bearer token", admins_only=True)
    g.api_user = user


def signed_in_user(token_hint: str, *, admins_only: bool = False):
    """The caller's bearer-token user, else the session's (with its CSRF token); APIError 401/403."""
    try:
        user = bearer_user()
    except BearerRefused as exc:
        raise APIError(401, str(exc)) from None
    via_session = user is None
    if via_session:
        if not current_user.is_authenticated:
            raise APIError(401, f"authentication required: sign in or send {token_hint}")
        user = current_user.user
    if admins_only and not user.is_admin:
        raise APIError(403, "administrators only")
    # A browser never adds an Authorization header on its own, so only cookies need CSRF.
    if via_session and current_app.config.get("WTF_CSRF_ENABLED", True):
        csrf.protect()
    return user


def body() -> dict:
    """The JSON object in the body (an empty body counts as ``{}``)."""
    if not request.get_data(cache=True):
        return {}
    data = request.get_json(force=True, silent=True)
    if not isinstance(data, dict):
        raise APIError(400, "the request body must be a JSON object")
    return data


def query_int(value: str | None) -> object:
    """A query-string number: digits become an int, anything else is left for the service to refuse."""
    if value is not None and re.fullmatch(r"\d{1,4}", value.strip()):
        return int(value)
    return value
