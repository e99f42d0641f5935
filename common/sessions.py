"""Reading the admin app's signed session cookie without importing Flask.

Flask and Quart sign the cookie the same way (itsdangerous, salt
``cookie-session``, HMAC-SHA1 key derivation). The gateway only needs the
user reference that Flask-Login keeps under ``_user_id``.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from itsdangerous import BadData, BadSignature, URLSafeTimedSerializer

SESSION_COOKIE_NAME = "seadragon_session"
SESSION_LIFETIME_SECONDS = 12 * 3600


def user_reference(user_id: int, session_version: int) -> str:
    """What Flask-Login stores: the id and the session version it was made with."""
    return f"{user_id}:{session_version}"


def parse_user_reference(value: object) -> tuple[int, int] | None:
    """``(user_id, session_version)`` from a stored reference, or ``None``."""
    if not isinstance(value, str):
        return None
    user_id, _, version = value.partition(":")
    if not (user_id.isdigit() and version.isdigit()):
        return None
    return int(user_id), int(version)


def _serializer(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(
        secret_key,
        salt="cookie-session",
        serializer=json,
        signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha1},
    )


def read_session_cookie(value: str | None, secret_key: str) -> dict | None:
    """The session's contents if the cookie is genuine and fresh, else ``None``."""
    if not value:
        return None
    try:
        data = _serializer(secret_key).loads(value, max_age=SESSION_LIFETIME_SECONDS)
    except (BadSignature, ValueError):
        return None
    return data if isinstance(data, dict) else None


CSRF_SESSION_FIELD = "csrf_token"  # where Flask-WTF keeps the raw token in the session


def csrf_token_valid(session: dict | None, token: str | None, secret_key: str) -> bool:
    """True if ``token`` (the ``X-CSRFToken`` header) is the admin app's signed CSRF token for
    this session, as Flask-WTF checks it (salt ``wtf-csrf-token``, the session's lifetime)."""
    expected = (session or {}).get(CSRF_SESSION_FIELD)
    if not token or not isinstance(expected, str):
        return False
    try:
        raw = URLSafeTimedSerializer(secret_key, salt="wtf-csrf-token").loads(
            token, max_age=SESSION_LIFETIME_SECONDS
        )
    except (BadData, ValueError):
        return False
    return isinstance(raw, str) and hmac.compare_digest(raw, expected)
