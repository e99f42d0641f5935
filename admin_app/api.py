"""The JSON admin API (docs/contract.md §3) under ``/api/admin``: the same services as the panel."""

from __future__ import annotations

import re

from flask import Blueprint, current_app, g, request, url_for
from flask_login import current_user

from admin_app import accounts, services
from admin_app.extensions import csrf
from common.models import iso

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
    """JSON for every refusal raised by this blueprint."""
    headers = {"WWW-Authenticate": 'Bearer realm="seadragon-admin"'} if exc.status == 401 else {}
    return {"error": exc.message}, exc.status, headers


@bp.errorhandler(services.ServiceError)
def service_error(exc: services.ServiceError):
    """A service's refusal: 400 naming the field, 404 unknown, 409 duplicate."""
    return {"error": exc.message}, exc.status


@bp.before_request
def authenticate():
    """Admin session (with X-CSRFToken on unsafe methods) or an admin's bearer token."""
    authorization = request.headers.get("Authorization")
    if authorization is not None:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise APIError(401, "Authorization must be 'Bearer <access token>'")
        user = accounts.user_for_access_token(value.strip())
        if user is None:
            raise APIError(401, "invalid or expired access token")
        via_session = False
    elif current_user.is_authenticated:
        user, via_session = current_user.user, True
    else:
        raise APIError(401, "authentication required: sign in or send an admin's bearer token")
    if not user.is_admin:
        raise APIError(403, "administrators only")
    # A browser never adds an Authorization header on its own, so only cookies need CSRF.
    if via_session and current_app.config.get("WTF_CSRF_ENABLED", True):
        csrf.protect()
    g.api_user = user


def _body() -> dict:
    """The JSON object in the body (an empty body counts as ``{}``)."""
    if not request.get_data(cache=True):
        return {}
    data = request.get_json(force=True, silent=True)
    if not isinstance(data, dict):
        raise APIError(400, "the request body must be a JSON object")
    return data


def _query_int(value: str | None) -> object:
    """A query-string number: digits become an int, anything else is left for the service to refuse."""
    if value is not None and re.fullmatch(r"\d{1,4}", value.strip()):
        return int(value)
    return value


# -- whitelist ---------------------------------------------------------------


@bp.get("/whitelist")
def whitelist_list():
    """Every whitelist entry, newest first."""
    return [services.whitelist_json(entry) for entry in services.list_whitelist()]


@bp.post("/whitelist")
def whitelist_add():
    """Add ``{"ip", "label"?, "priority"?}`` (or ``?ip=…&label=…&priority=…``) → 201 + entry."""
    data = _body()
    if not data and request.args.get("ip") is not None:
        data = {
            "ip": request.args.get("ip"),
            "label": request.args.get("label"),
            "priority": _query_int(request.args.get("priority")),
        }
    data = {key: value for key, value in data.items() if value is not None}
    if "ip" not in data:
        raise APIError(400, "ip is required (an IP address or CIDR)")
    priority = data.get("priority", current_app.config["SEADRAGON"].direct_priority)
    entry = services.add_whitelist_entry(data["ip"], data.get("label"), priority)
    return services.whitelist_json(entry), 201


@bp.delete("/whitelist/<path:ident>")
def whitelist_remove(ident: str):
    """Remove by id or by IP/CIDR (``/`` written ``%2F``) → 200 + the removed entry."""
    return services.whitelist_json(services.remove_whitelist_entry(ident))


# -- registration tokens -----------------------------------------------------


@bp.get("/tokens")
def tokens_list():
    """Every registration token with its status, newest first."""
    return [services.token_json(token) for token in services.list_tokens()]


@bp.post("/tokens")
def tokens_create():
    """Create ``{"expires_in_days"?}`` → 201 with the token and sign-up link, shown once."""
    data = _body()
    days = data.get("expires_in_days", services.TOKEN_DAYS_DEFAULT)
    token, secret = services.create_registration_token(days, g.api_user)
    body = {
        "id": token.id,
        "token": secret,
        "expires_at": iso(token.expires_at),
        "register_url": url_for("auth.register", token=secret, _external=True),
    }
    return body, 201


@bp.delete("/tokens/<int:token_id>")
def tokens_revoke(token_id: int):
    """Revoke a token → 200 + the token; 404 if unknown."""
    return services.token_json(services.revoke_token(token_id))


# -- API keys ----------------------------------------------------------------


@bp.get("/apikeys")
def apikeys_list():
    """Every API key (never the key itself), newest first."""
    return [services.apikey_json(key) for key in services.list_api_keys()]


@bp.post("/apikeys")
def apikeys_create():
    """Create ``{"name", "priority"}`` → 201 with the key, shown this once."""
    data = _body()
    for field in ("name", "priority"):
        if data.get(field) is None:
            raise APIError(400, f"{field} is required")
    key, secret = services.create_api_key(data["name"], data["priority"], g.api_user)
    body = {
        "id": key.id,
        "key": secret,
        "name": key.name,
        "priority": key.priority,
        "prefix": key.prefix,
        "created_at": iso(key.created_at),
    }
    return body, 201


@bp.delete("/apikeys/<int:key_id>")
def apikeys_revoke(key_id: int):
    """Revoke a key → 200 (also when already revoked); 404 if unknown."""
    return services.apikey_json(services.revoke_api_key(key_id))
