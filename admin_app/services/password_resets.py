"""Password reset by an admin (docs/contract.md §14): a single-use link where a user sets a new password.

The admin makes the link (``PASSWORD_RESET_HOURS``, default 24 h); only its SHA-256 is stored. Using
it sets the password and ends every other session and access token of the user (the session version
is bumped), in one transaction that claims the link first, so a link works exactly once even when
two browsers submit it together. A newer link replaces the user's older unused ones.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from admin_app import accounts
from admin_app.extensions import db
from admin_app.services import ServiceError, get_or_not_found
from admin_app.services.audit import record
from common.models import PasswordReset, User, utcnow
from common.security import hash_password, hash_secret, new_secret
from common.settings import Settings

RESET_PREFIX = "sdp_"
PROBLEMS = {
    "unknown": "This password-reset link is not valid. Ask an administrator for a new one.",
    "used": "This password-reset link has already been used. Ask an administrator for a new one.",
    "expired": "This password-reset link has expired. Ask an administrator for a new one.",
}


def create_reset(user_id: int, actor: User, settings: Settings) -> tuple[PasswordReset, str]:
    """A new single-use link for the user (the secret is returned once, never stored or audited)."""
    user = get_or_not_found(User, user_id, "user")
    now = utcnow()
    # Only the newest link works: an older one may sit in a mailbox or a chat history.
    db.session.execute(
        sa.delete(PasswordReset).where(PasswordReset.user_id == user.id, PasswordReset.used_at.is_(None))
    )
    secret = new_secret(RESET_PREFIX)
    reset = PasswordReset(
        token_hash=hash_secret(secret),
        user_id=user.id,
        created_at=now,
        expires_at=now + timedelta(hours=settings.password_reset_hours),
        created_by_id=actor.id,
    )
    db.session.add(reset)
    record(actor, "user.password_reset", f"user:{user.id}", {"expires_at": reset.expires_at})
    db.session.commit()
    return reset, secret


def reset_problem(secret: str) -> str | None:
    """Why a link cannot be used (unknown, used, expired), or ``None`` while it can."""
    reset = db.session.scalar(sa.select(PasswordReset).where(PasswordReset.token_hash == hash_secret(secret)))
    if reset is None:
        return PROBLEMS["unknown"]
    if reset.used_at is not None:
        return PROBLEMS["used"]
    if reset.expires_at <= utcnow():
        return PROBLEMS["expired"]
    return None


def use_reset(secret: object, new_password: object) -> User:
    """Set the password with the link (once) and end every session and access token of the user."""
    if not isinstance(secret, str) or not secret.strip():
        raise ServiceError(PROBLEMS["unknown"], "token")
    token_hash = hash_secret(secret.strip())
    # Hashing is slow: done before the link is claimed, so the lock is held briefly.
    password_hash = hash_password(accounts.check_password(new_password, "new_password"))
    db.session.rollback()
    now = utcnow()
    # Claiming the link is the transaction's first write: exactly one of two racing submits matches.
    claimed = db.session.execute(
        sa.update(PasswordReset)
        .where(
            PasswordReset.token_hash == token_hash,
            PasswordReset.used_at.is_(None),
            PasswordReset.expires_at > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        db.session.rollback()
        raise ServiceError(reset_problem(secret.strip()) or PROBLEMS["unknown"], "token")
    reset = db.session.scalar(sa.select(PasswordReset).where(PasswordReset.token_hash == token_hash))
    user = reset.user
    user.password_hash = password_hash
    accounts.end_sessions(user)
    db.session.commit()
    return user
