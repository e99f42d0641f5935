"""Service functions behind both the HTML panel and the JSON API: whitelist, tokens, API keys.

Each function validates its own input (types included, so the JSON API can
pass decoded values straight through), writes, commits and returns model
rows. Problems are raised as :class:`ServiceError` naming the field.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from admin_app.extensions import db
from common.models import APIKey, RegistrationToken, User, WhitelistEntry, iso, utcnow
from common.network import network_text, normalise_network
from common.security import REGISTRATION_TOKEN_PREFIX, display_prefix, hash_secret, new_api_key, new_secret

PRIORITY_MIN, PRIORITY_MAX = 0, 100
NAME_MAX = 100
TOKEN_DAYS_MIN, TOKEN_DAYS_MAX, TOKEN_DAYS_DEFAULT = 1, 365, 7


class ServiceError(Exception):
    """A request the service refuses; ``field`` names the input at fault."""

    status = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(ServiceError):
    """The id or address names nothing."""

    status = 404


class Conflict(ServiceError):
    """The thing already exists."""

    status = 409


def check_int(value: object, field: str, low: int, high: int) -> int:
    """``value`` as an int in ``[low, high]``; bools, strings and fractions are refused."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ServiceError(f"{field} must be a whole number from {low} to {high}", field)
    return value


def check_text(value: object, field: str, *, required: bool, maximum: int = NAME_MAX) -> str:
    """A stripped string of at most ``maximum`` characters (at least one when required)."""
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise ServiceError(f"{field} must be a string", field)
    text = value.strip()
    if required and not text:
        raise ServiceError(f"{field} is required (1 to {maximum} characters)", field)
    if len(text) > maximum:
        raise ServiceError(f"{field} must be at most {maximum} characters", field)
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise ServiceError(f"{field} must not contain control characters", field)
    return text


MAX_ID = 2**63 - 1  # larger ids cannot exist, and SQLite would overflow binding them


def get_by_id(model, row_id: int):
    """The row with this primary key, or ``None`` (also for absurdly large ids)."""
    return db.session.get(model, row_id) if 0 <= row_id <= MAX_ID else None


def get_or_not_found(model, row_id: int, what: str):
    """The row with this primary key; :class:`NotFound` ("no <what> <id>") if there is none."""
    row = get_by_id(model, row_id)
    if row is None:
        raise NotFound(f"no {what} {row_id}")
    return row


def _newest_first(model, column):
    return db.session.scalars(sa.select(model).order_by(column.desc(), model.id.desc())).all()


# -- whitelist ---------------------------------------------------------------


def list_whitelist() -> list[WhitelistEntry]:
    """Every whitelist entry, newest first."""
    return list(_newest_first(WhitelistEntry, WhitelistEntry.added_at))


def add_whitelist_entry(ip: object, label: object, priority: object) -> WhitelistEntry:
    """Admit an IP or CIDR (normalised; host bits cleared) with a label and priority."""
    if not isinstance(ip, str):
        raise ServiceError("ip must be a string holding an IP address or CIDR", "ip")
    try:
        text = network_text(normalise_network(ip))
    except ValueError as exc:
        raise ServiceError(f"ip: {exc}", "ip") from None
    label_text = check_text(label, "label", required=False)
    priority_value = check_int(priority, "priority", PRIORITY_MIN, PRIORITY_MAX)
    if db.session.scalar(sa.select(WhitelistEntry.id).where(WhitelistEntry.ip == text)) is not None:
        raise Conflict(f"ip: {text} is already on the whitelist", "ip")
    entry = WhitelistEntry(ip=text, label=label_text, priority=priority_value, added_at=utcnow())
    db.session.add(entry)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(f"ip: {text} is already on the whitelist", "ip") from None
    return entry


def find_whitelist_entry(ident: str) -> WhitelistEntry | None:
    """The entry with this id (all digits) or this IP/CIDR (in any spelling)."""
    ident = ident.strip()
    if ident.isdigit():
        return get_by_id(WhitelistEntry, int(ident))
    try:
        text = network_text(normalise_network(ident))
    except ValueError:
        return None
    return db.session.scalar(sa.select(WhitelistEntry).where(WhitelistEntry.ip == text))


def remove_whitelist_entry(ident: str) -> WhitelistEntry:
    """Remove the entry named by id or IP/CIDR; :class:`NotFound` when absent."""
    entry = find_whitelist_entry(ident)
    if entry is None:
        raise NotFound(f"no whitelist entry {ident!r}")
    db.session.delete(entry)
    db.session.commit()
    return entry


def whitelist_json(entry: WhitelistEntry) -> dict:
    """docs/contract.md §3 shape of a whitelist entry."""
    return {
        "id": entry.id,
        "ip": entry.ip,
        "label": entry.label,
        "priority": entry.priority,
        "added_at": iso(entry.added_at),
    }


# -- registration tokens -----------------------------------------------------


def create_registration_token(
    expires_in_days: object = TOKEN_DAYS_DEFAULT, created_by: User | None = None
) -> tuple[RegistrationToken, str]:
    """A new single-use sign-up token; returns the row and the secret (shown once)."""
    days = check_int(expires_in_days, "expires_in_days", TOKEN_DAYS_MIN, TOKEN_DAYS_MAX)
    secret = new_secret(REGISTRATION_TOKEN_PREFIX)
    now = utcnow()
    token = RegistrationToken(
        token_hash=hash_secret(secret),
        prefix=display_prefix(secret),
        created_at=now,
        expires_at=now + timedelta(days=days),
        created_by_id=created_by.id if created_by else None,
    )
    db.session.add(token)
    db.session.commit()
    return token, secret


def list_tokens() -> list[RegistrationToken]:
    """Every registration token, newest first."""
    return list(_newest_first(RegistrationToken, RegistrationToken.created_at))


def revoke_token(token_id: int) -> RegistrationToken:
    """Revoke an unused token (a used one stays ``used``); :class:`NotFound` if unknown."""
    token = get_or_not_found(RegistrationToken, token_id, "registration token")
    if token.used_at is None and token.revoked_at is None:
        token.revoked_at = utcnow()
        db.session.commit()
    return token


def token_json(token: RegistrationToken) -> dict:
    """docs/contract.md §3 shape of a registration token (never the secret)."""
    return {
        "id": token.id,
        "prefix": token.prefix,
        "created_at": iso(token.created_at),
        "expires_at": iso(token.expires_at),
        "status": token.status(),
        "used_by": token.used_by.username if token.used_by else None,
    }


# -- API keys ----------------------------------------------------------------


def create_api_key(name: object, priority: object, created_by: User | None = None) -> tuple[APIKey, str]:
    """A new API key; returns the row and the key itself (shown once, stored hashed)."""
    name_text = check_text(name, "name", required=True)
    priority_value = check_int(priority, "priority", PRIORITY_MIN, PRIORITY_MAX)
    secret = new_api_key()
    key = APIKey(
        name=name_text,
        key_hash=hash_secret(secret),
        prefix=display_prefix(secret),
        priority=priority_value,
        created_at=utcnow(),
        created_by_id=created_by.id if created_by else None,
    )
    db.session.add(key)
    db.session.commit()
    return key, secret


def list_api_keys() -> list[APIKey]:
    """Every API key, newest first."""
    return list(_newest_first(APIKey, APIKey.created_at))


def revoke_api_key(key_id: int) -> APIKey:
    """Revoke a key (idempotent); :class:`NotFound` if unknown."""
    key = get_or_not_found(APIKey, key_id, "API key")
    if key.is_active:
        key.is_active = False
        key.revoked_at = utcnow()
        db.session.commit()
    return key


def apikey_json(key: APIKey) -> dict:
    """docs/contract.md §3 shape of an API key (never the key)."""
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "priority": key.priority,
        "created_at": iso(key.created_at),
        "last_used": iso(key.last_used),
        "is_active": key.is_active,
    }


# -- dashboard ---------------------------------------------------------------


def dashboard_counts() -> dict[str, int]:
    """What the dashboard counts: users, active keys, whitelist entries, open tokens."""

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
