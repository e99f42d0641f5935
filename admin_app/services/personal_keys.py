"""Personal API keys (docs/contract.md §14): a signed-in user's own keys for agents and scripts.

A personal key is an :class:`~common.models.APIKey` with an ``owner_id``. The gateway classifies it
as a custom app with priority ``USER_KEY_PRIORITY``, but counts it as its owner for every limit and
for fair share. A user holds at most ``USER_MAX_KEYS`` active keys; the admin sees, edits and
revokes them with every other key (``admin_app.services.apikeys``).
"""

from __future__ import annotations

import sqlalchemy as sa

from admin_app.extensions import db
from admin_app.services import Conflict, NotFound, ServiceError, check_text, get_by_id
from admin_app.services.apikeys import target
from admin_app.services.audit import record
from common.models import APIKey, User, utcnow
from common.policies import PolicyError, parse_expires_at
from common.security import display_prefix, hash_secret, new_api_key
from common.settings import Settings


def list_personal_keys(user: User) -> list[APIKey]:
    """The user's keys, revoked ones included, newest first."""
    return list(
        db.session.scalars(
            sa.select(APIKey)
            .where(APIKey.owner_id == user.id)
            .order_by(APIKey.created_at.desc(), APIKey.id.desc())
        )
    )


def active_count(user_id: int) -> int:
    """How many of the user's keys still work: not revoked and not expired."""
    now = utcnow()
    return (
        db.session.scalar(
            sa.select(sa.func.count(APIKey.id)).where(
                APIKey.owner_id == user_id,
                APIKey.is_active.is_(True),
                APIKey.revoked_at.is_(None),
                sa.or_(APIKey.expires_at.is_(None), APIKey.expires_at > now),
            )
        )
        or 0
    )


def create_personal_key(
    user: User, name: object, expires_at: object, settings: Settings
) -> tuple[APIKey, str]:
    """A new key of ``user`` (shown once, stored hashed); 409 once ``USER_MAX_KEYS`` keys are active."""
    name_text = check_text(name, "name", required=True)
    expiry = None
    if expires_at is not None:
        try:
            expiry = parse_expires_at(expires_at)
        except PolicyError as exc:
            raise ServiceError(exc.message, exc.field) from None
        if expiry <= utcnow():
            raise ServiceError("expires_at must be in the future", "expires_at")
    # Lock the owner's row (PostgreSQL) so two concurrent creations cannot both pass the count.
    db.session.execute(sa.select(User.id).where(User.id == user.id).with_for_update())
    if active_count(user.id) >= settings.user_max_keys:
        db.session.rollback()
        raise Conflict(
            f"you already have {settings.user_max_keys} active keys (the most allowed): revoke one first"
        )
    secret = new_api_key()
    key = APIKey(
        name=name_text,
        key_hash=hash_secret(secret),
        prefix=display_prefix(secret),
        priority=settings.user_key_priority,
        created_at=utcnow(),
        created_by_id=user.id,
        owner_id=user.id,
        expires_at=expiry,
    )
    db.session.add(key)
    db.session.flush()
    changes = {"name": name_text, "prefix": key.prefix, "owner": user.username, "expires_at": expiry}
    record(user, "apikey.create", target(key), changes)
    db.session.commit()
    return key, secret


def revoke_personal_key(user: User, key_id: int) -> APIKey:
    """Revoke one of the user's keys (idempotent); another user's or an unknown id → 404."""
    key = get_by_id(APIKey, key_id)
    if key is None or key.owner_id != user.id:
        raise NotFound(f"no API key {key_id}")
    if key.is_active:
        key.is_active = False
        key.revoked_at = utcnow()
        record(user, "apikey.revoke", target(key), {"is_active": [True, False]})
        db.session.commit()
    return key
