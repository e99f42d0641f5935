"""Registration-token service: single-use sign-up invitations."""

from __future__ import annotations

from datetime import timedelta

from admin_app.extensions import db
from admin_app.services import check_int, check_text, get_or_not_found, newest_first
from admin_app.services.audit import record
from common.models import RegistrationToken, User, utcnow
from common.security import REGISTRATION_TOKEN_PREFIX, display_prefix, hash_secret, new_secret

TOKEN_DAYS_MIN, TOKEN_DAYS_MAX, TOKEN_DAYS_DEFAULT = 1, 365, 7
NOTE_MAX = 200


def target(token: RegistrationToken) -> str:
    """The audit target naming a token."""
    return f"token:{token.id}"


def create_registration_token(
    expires_in_days: object, actor: User | None, note: object = None
) -> tuple[RegistrationToken, str]:
    """A new single-use sign-up token, with an optional "for whom" note; the secret is shown once."""
    days = check_int(expires_in_days, "expires_in_days", TOKEN_DAYS_MIN, TOKEN_DAYS_MAX)
    for_whom = check_text(note, "note", required=False, maximum=NOTE_MAX) or None
    secret = new_secret(REGISTRATION_TOKEN_PREFIX)
    now = utcnow()
    token = RegistrationToken(
        token_hash=hash_secret(secret),
        prefix=display_prefix(secret),
        created_at=now,
        expires_at=now + timedelta(days=days),
        created_by_id=actor.id if actor else None,
        note=for_whom,
    )
    db.session.add(token)
    db.session.flush()
    record(
        actor,
        "token.create",
        target(token),
        {"prefix": token.prefix, "expires_at": token.expires_at, "note": for_whom},
    )
    db.session.commit()
    return token, secret


def list_tokens() -> list[RegistrationToken]:
    """Every registration token, newest first."""
    return newest_first(RegistrationToken, RegistrationToken.created_at)


def revoke_token(token_id: int, actor: User | None) -> RegistrationToken:
    """Revoke an unused token (a used one stays ``used``); :class:`NotFound` if unknown."""
    token = get_or_not_found(RegistrationToken, token_id, "registration token")
    if token.used_at is None and token.revoked_at is None:
        before = token.status()
        token.revoked_at = utcnow()
        record(actor, "token.revoke", target(token), {"status": [before, "revoked"]})
        db.session.commit()
    return token
