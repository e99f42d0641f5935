"""``/api/admin/tokens``: registration tokens (docs/contract.md §3)."""

from __future__ import annotations

from flask import g

from admin_app.api.base import body, bp
from admin_app.links import public_link
from admin_app.services import tokens as service
from common.models import RegistrationToken, iso


def token_json(token: RegistrationToken) -> dict:
    """docs/contract.md §3 shape of a registration token (never the secret)."""
    return {
        "id": token.id,
        "prefix": token.prefix,
        "created_at": iso(token.created_at),
        "expires_at": iso(token.expires_at),
        "status": token.status(),
        "used_by": token.used_by.username if token.used_by else None,
    } | _note(token)


def _note(token: RegistrationToken) -> dict:
    # Only when given: the contract's token shapes (docs/contract.md §3) stay exact without one.
    return {"note": token.note} if token.note else {}


@bp.get("/tokens")
def tokens_list():
    """Every registration token with its status, newest first."""
    return [token_json(token) for token in service.list_tokens()]


@bp.post("/tokens")
def tokens_create():
    """Create ``{"expires_in_days"?, "note"?}`` → 201 with the token and sign-up link, shown once."""
    data = body()
    days = data.get("expires_in_days", service.TOKEN_DAYS_DEFAULT)
    token, secret = service.create_registration_token(days, g.api_user, data.get("note"))
    created = {
        "id": token.id,
        "token": secret,
        "expires_at": iso(token.expires_at),
        "register_url": public_link("auth.register", token=secret),
    } | _note(token)
    return created, 201


@bp.delete("/tokens/<int:token_id>")
def tokens_revoke(token_id: int):
    """Revoke a token → 200 + the token; 404 if unknown."""
    return token_json(service.revoke_token(token_id, g.api_user))
