"""Request → identity: docs/contract.md §4 applied to a Quart request with the cached tables.

What the request presented is kept as a :class:`Principal` so that a queued
request can be classified again after each cache refresh: a key revoked or a
whitelist entry removed while it waits refuses it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from quart import Request

from common.network import IPAddress, resolve_client_ip
from common.security import hash_secret
from common.sessions import SESSION_COOKIE_NAME, read_session_cookie
from common.settings import Settings
from common.sources import (
    ClassificationError,
    Credentials,
    Identity,
    UserInfo,
    classify,
    parse_credentials,
    single_credential,
)
from proxy_app.identity_snapshot import NO_POLICY, Snapshot


@dataclass(frozen=True)
class Principal:
    """Everything a request presented that classification looks at."""

    credentials: Credentials
    client_ip: IPAddress | None
    origin: str | None
    session_reference: object = None  # Flask-Login's "_user_id" from a genuine session cookie


# The request headers classification reads, as ASGI names them (lower-case bytes).
_WANTED = frozenset({b"x-api-key", b"authorization", b"x-forwarded-for", b"origin", b"cookie"})


def principal_of(request: Request, settings: Settings) -> Principal:
    """Read credentials, client IP, origin and session (400 on conflicting or repeated credentials)."""
    # One pass over the raw headers: every request pays for this, and most of
    # the names asked for are absent (a miss in Werkzeug's Headers raises inside).
    found: dict[bytes, list[str]] = {}
    for name, value in request.scope["headers"]:  # ASGI names are lower-case already
        if name in _WANTED:
            found.setdefault(name, []).append(value.decode("latin-1"))
    credentials = parse_credentials(
        single_credential(found.get(b"x-api-key"), "X-API-Key"),
        single_credential(found.get(b"authorization"), "Authorization"),
    )
    peer = request.scope.get("client") or (None, None)
    # A proxy may add its hop as a separate header line: read them all, in order.
    forwarded = ", ".join(found.get(b"x-forwarded-for", ()))
    client_ip = resolve_client_ip(peer[0], forwarded or None, settings.trusted_proxies)
    session = None
    if b"cookie" in found:
        session = read_session_cookie(request.cookies.get(SESSION_COOKIE_NAME), settings.secret_key)
    return Principal(
        credentials=credentials,
        client_ip=client_ip,
        origin=_first(found, b"origin"),
        session_reference=(session or {}).get("_user_id"),
    )


def _first(found: dict[bytes, list[str]], name: bytes) -> str | None:
    values = found.get(name)
    return values[0] if values else None


def identify(principal: Principal, snapshot: Snapshot, settings: Settings) -> Identity:
    """Classify against the current snapshot, with the identity's policy; ``ClassificationError`` refuses.

    An expired key is refused here, before anything else (docs/contract.md §7).
    """
    identity = classify(
        principal.credentials,
        principal.client_ip,
        principal.origin,
        find_key=snapshot.find_key,
        whitelist=snapshot.whitelist,
        find_token_user=snapshot.find_token_user,
        session_user=snapshot.session_user(principal.session_reference),
        allowed_origins=settings.cors_origins,
        direct_priority=settings.direct_priority,
        webchat_priority=settings.webchat_priority,
    )
    policy = snapshot.policy_of(identity.holder)
    key_holder = identity.key_holder  # a personal key: its own policy applies too (docs/contract.md §14)
    key_policy = NO_POLICY if key_holder is None else snapshot.policy_of(key_holder)
    if policy is NO_POLICY and key_policy is NO_POLICY:
        return identity  # most callers: nothing to attach
    now = datetime.now(UTC)
    if policy.expired(now) or key_policy.expired(now):
        raise ClassificationError(401, "API key expired")
    return replace(identity, policy=policy, key_policy=key_policy)


def logged_in_user(principal: Principal, snapshot: Snapshot) -> UserInfo | None:
    """The user behind a session cookie or a user access token (not an API key), if any."""
    if principal.credentials.user_token is not None:
        return snapshot.find_token_user(hash_secret(principal.credentials.user_token))
    return snapshot.session_user(principal.session_reference)
