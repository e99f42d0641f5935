"""What the dashboard counts."""

from __future__ import annotations

import sqlalchemy as sa

from admin_app.extensions import db
from common.models import APIKey, RegistrationToken, User, WhitelistEntry, utcnow


def dashboard_counts() -> dict[str, int]:
    """Users, active keys, whitelist entries, open tokens."""

    def count(model, *where) -> int:
        return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where)) or 0

    now = utcnow()
    return {
        "users": count(User),
        "active_users": count(User, User.is_active.is_(True)),
        "admins": count(User, User.is_admin.is_(True), User.is_active.is_(True)),
        "api_keys": count(APIKey, APIKey.is_active.is_(True)),
        "revoked_keys": count(APIKey, APIKey.is_active.is_(False)),
        "whitelist": count(WhitelistEntry),
        "open_tokens": count(
            RegistrationToken,
            RegistrationToken.used_at.is_(None),
            RegistrationToken.revoked_at.is_(None),
            RegistrationToken.expires_at > now,
        ),
    }
