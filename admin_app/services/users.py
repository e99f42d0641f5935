"""User administration: roles, enabling and disabling, policies. Sign-in and sign-up live in ``accounts``."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from admin_app.accounts import end_sessions
from admin_app.extensions import db
from admin_app.services import ServiceError, get_or_not_found
from admin_app.services import policies as policy_patch
from common.models import User
from common.policies import LIMIT_FIELDS


def _check_flag(field: str):
    def check(value: object) -> bool:
        if not isinstance(value, bool):
            raise ServiceError(f"{field} must be true or false", field)
        return value

    return check


PATCH_CHECKS = {"is_admin": _check_flag("is_admin"), "is_active": _check_flag("is_active")}
REFUSALS = {"is_admin": "demoted", "is_active": "disabled"}


def target(user: User) -> str:
    """The audit target naming a user."""
    return f"user:{user.id}"


def list_users() -> list[User]:
    """Every user, newest first."""
    return list(db.session.scalars(sa.select(User).order_by(User.created_at.desc(), User.id.desc())))


def _refuse_losing_admins(user: User, values: dict[str, Any], actor: User | None) -> None:
    """Nobody removes their own rights, and the last active administrator stays one."""
    losing = [field for field in REFUSALS if values.get(field) is False and getattr(user, field)]
    if not losing or not (user.is_admin and user.is_active):
        return
    field = losing[0]
    if actor is not None and actor.id == user.id:
        verb = "demote" if field == "is_admin" else "disable"
        raise ServiceError(f"{field}: you cannot {verb} yourself; ask another administrator", field)
    others = db.session.scalar(
        sa.select(sa.func.count())
        .select_from(User)
        .where(User.is_admin.is_(True), User.is_active.is_(True), User.id != user.id)
    )
    if not others:
        raise ServiceError(
            f"{field}: {user.username} is the last active administrator and cannot be {REFUSALS[field]}.",
            field,
        )


def update_user(user_id: int, patch: object, actor: User | None) -> User:
    """Change ``is_admin``, ``is_active`` and policy fields (``None`` clears one); audited.

    Disabling ends the user's sessions and access tokens.
    """
    user = get_or_not_found(User, user_id, "user")
    values = policy_patch.check_patch(patch, PATCH_CHECKS, LIMIT_FIELDS)
    _refuse_losing_admins(user, values, actor)
    if values.get("is_active") is False and user.is_active:
        end_sessions(user)
    policy_patch.apply(user, values, actor, "user.update", target(user))
    db.session.commit()
    return user
