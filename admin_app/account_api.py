"""``/account/api``: a signed-in user's own API keys and usage (docs/contract.md §14).

Open to the user's session (with ``X-CSRFToken`` on unsafe methods, as the admin API) or the
user's ``Authorization: Bearer`` access token. Never to an API key: a key cannot make keys.
"""

from __future__ import annotations

from flask import Blueprint, current_app, g

from admin_app import services
from admin_app.api.base import APIError, api_error, body, service_error, signed_in_user
from admin_app.extensions import csrf, db
from admin_app.services import personal_keys
from common.models import APIKey, iso, utcnow
from common.own_usage import own_usage

bp = Blueprint("account_api", __name__, url_prefix="/account/api")
csrf.exempt(bp)  # checked in authenticate(), for cookie sessions only


bp.register_error_handler(APIError, api_error)
bp.register_error_handler(services.ServiceError, service_error)


@bp.before_request
def authenticate():
    """The user's session (with X-CSRFToken on unsafe methods) or the user's bearer token."""
    g.account_user = signed_in_user("your access token")


def key_json(key: APIKey) -> dict:
    """A personal key as its owner sees it (never the key itself)."""
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "created_at": iso(key.created_at),
        "expires_at": iso(key.expires_at),
        "last_used": iso(key.last_used),
        "is_active": key.is_active and (key.expires_at is None or key.expires_at > utcnow()),
        "revoked_at": iso(key.revoked_at),
    }


@bp.get("/keys")
def keys_list():
    """The user's keys, newest first (revoked ones too, marked inactive)."""
    return [key_json(key) for key in personal_keys.list_personal_keys(g.account_user)]


@bp.post("/keys")
def keys_create():
    """``{"name", "expires_at"?}`` → 201 with the key, shown this once; 409 at ``USER_MAX_KEYS``."""
    data = body()
    unknown = sorted(set(data) - {"name", "expires_at"})
    if unknown:
        raise APIError(400, f"{unknown[0]}: unknown field (expected name, expires_at)")
    if data.get("name") is None:
        raise APIError(400, "name is required")
    settings = current_app.config["SEADRAGON"]
    key, secret = personal_keys.create_personal_key(
        g.account_user, data["name"], data.get("expires_at"), settings
    )
    created = {
        "id": key.id,
        "key": secret,
        "name": key.name,
        "prefix": key.prefix,
        "created_at": iso(key.created_at),
        "expires_at": iso(key.expires_at),
    }
    return created, 201


@bp.delete("/keys/<int:key_id>")
def keys_revoke(key_id: int):
    """Revoke one of the user's keys → 200 (also when it already was); another's → 404."""
    return key_json(personal_keys.revoke_personal_key(g.account_user, key_id))


@bp.get("/usage")
def usage():
    """Requests, tokens and GPU time of the last 24 h and 7 d, the limits and what is left today."""
    return own_usage(db.session, g.account_user, current_app.config["SEADRAGON"])
