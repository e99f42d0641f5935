"""Reading the admin app's signed session cookie without importing Flask.

Flask and Quart sign the cookie the same way (itsdangerous, salt
``cookie-session``, HMAC-SHA1 key derivation). The gateway only needs the
user reference that Flask-Login keeps under ``_user_id``.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from itsdangerous import BadSignature, URLSafeTimedSerializer

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


def csrf_token_valid(token: str | None, session: dict | None, secret_key: str, max_age: int) -> bool:
    """True if ``token`` is the Flask-WTF CSRF token of this (already verified) session.

    Flask-WTF keeps a random value under ``csrf_token`` in the session and hands
    pages that value signed with salt ``wtf-csrf-token``; the gateway checks it the same way.
    """
    if not token or not session or not isinstance(session.get("csrf_token"), str):
        return False
    try:
        value = URLSafeTimedSerializer(secret_key, salt="wtf-csrf-token").loads(token, max_age=max_age)
    except (BadSignature, ValueError):
        return False
    return isinstance(value, str) and hmac.compare_digest(session["csrf_token"], value)
