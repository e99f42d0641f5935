"""``/api/admin/users``: list and edit accounts (docs/contract.md §7)."""

from __future__ import annotations

from flask import current_app, g

from admin_app.api.base import body, bp
from admin_app.links import public_link
from admin_app.services import password_resets
from admin_app.services import users as service
from common.models import User, iso
from common.policies import LIMIT_FIELDS


def user_json(user: User) -> dict:
    """``{"id", "username", "is_admin", "is_active", "created_at", "last_login", <policy fields>}``."""
    shape = {
        "id": user.id,
        "username": user.username,
        "is_admin": user.is_admin,
        "is_active": user.is_active,
        "created_at": iso(user.created_at),
        "last_login": iso(user.last_login_at),
    }
    return shape | {field: getattr(user, field) for field in LIMIT_FIELDS}


@bp.get("/users")
def users_list():
    """Every user with role, state and policy, newest first."""
    return [user_json(user) for user in service.list_users()]


@bp.patch("/users/<int:user_id>")
def users_update(user_id: int):
    """Change ``is_admin``, ``is_active`` and policy fields (``null`` clears) → 200 + user; 404 if unknown."""
    return user_json(service.update_user(user_id, body(), g.api_user))


@bp.post("/users/<int:user_id>/password-reset")
def users_password_reset(user_id: int):
    """A single-use link where the user sets a new password → 201 ``{"url", "expires_at"}`` (§14)."""
    reset, secret = password_resets.create_reset(user_id, g.api_user, current_app.config["SEADRAGON"])
    return {"url": public_link("password_reset.page", token=secret), "expires_at": iso(reset.expires_at)}, 201
