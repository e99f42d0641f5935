"""The shared SQLAlchemy models, used by the admin app and the gateway."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

from common.usernames import KEY_MAX, username_key


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(sa.types.TypeDecorator):
    """Stores UTC; always returns timezone-aware UTC (SQLite drops the zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use common.models.utcnow()")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Identities' ids are never handed out twice (docs/contract.md §16; migration 0009): on SQLite a
# table needs AUTOINCREMENT for that, PostgreSQL's sequences never repeat.
NEVER_REUSED_IDS = {"sqlite_autoincrement": True}
MAX_ID = 2**63 - 1  # no row has a larger id; SQLite and PostgreSQL's bigint overflow binding one


def parse_utc(text: str) -> datetime | None:
    """An ISO 8601 time as timezone-aware UTC (no zone means UTC); ``None`` if malformed or out of range.

    ``0001-01-01T00:00:00+23:59`` parses but lies before year 1 in UTC, and
    ``9999-12-31T23:59:59-23:59`` after year 9999: converting either overflows,
    which must be a bad request, never a 500 (docs/contract.md §16).
    """
    try:
        moment = datetime.fromisoformat(text)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def iso(value: datetime | None) -> str | None:
    """ISO 8601 UTC with a ``Z``, as every API response shows times."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Base(AsyncAttrs, DeclarativeBase):
    """The one declarative base of every model."""


class PolicyColumns:
    """The policy of an identity (docs/contract.md §7; ``common.policies``): ``None`` is no limit."""

    models: Mapped[list[str] | None] = mapped_column(sa.JSON)  # patterns with * wildcards
    rpm: Mapped[int | None] = mapped_column()
    max_queued: Mapped[int | None] = mapped_column()
    max_concurrent: Mapped[int | None] = mapped_column()
    daily_tokens: Mapped[int | None] = mapped_column(sa.BigInteger)
    daily_gpu_seconds: Mapped[int | None] = mapped_column()  # GPU time per rolling 24 h (§13)


class User(PolicyColumns, Base):
    __tablename__ = "users"
    __table_args__ = NEVER_REUSED_IDS

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(100), unique=True)
    # common.usernames.username_key(username), kept by the validator below: the
    # unique index that makes Émile and émile, admin and ａｄｍｉｎ one account.
    username_key: Mapped[str] = mapped_column(sa.String(KEY_MAX), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    is_admin: Mapped[bool] = mapped_column(default=False)
    is_active: Mapped[bool] = mapped_column(default=True)
    # Bumped on logout-everywhere, password change and disable: every session
    # and access token carrying an older version stops working.
    session_version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @validates("username")
    def _keep_key(self, _name: str, value: str) -> str:
        self.username_key = username_key(value)
        return value


class RegistrationToken(Base):
    __tablename__ = "registration_tokens"
    __table_args__ = NEVER_REUSED_IDS

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    prefix: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    used_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Whom the invitation is for, so the list says which link went to whom (never the secret).
    note: Mapped[str | None] = mapped_column(sa.String(200))

    used_by: Mapped[User | None] = relationship(foreign_keys=[used_by_id], lazy="joined")

    def status(self, now: datetime | None = None) -> str:
        """``active``, ``used``, ``expired`` or ``revoked``."""
        if self.used_at is not None:
            return "used"
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at <= (now or utcnow()):
            return "expired"
        return "active"


class AccessToken(Base):
    """Bearer tokens from ``POST /auth/token``, stored hashed."""

    __tablename__ = "access_tokens"
    __table_args__ = NEVER_REUSED_IDS

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    session_version: Mapped[int] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(lazy="joined")


class APIKey(PolicyColumns, Base):
    __tablename__ = "api_keys"
    __table_args__ = NEVER_REUSED_IDS

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    prefix: Mapped[str] = mapped_column(sa.String(16))
    priority: Mapped[int] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    last_used: Mapped[datetime | None] = mapped_column(UTCDateTime)
    is_active: Mapped[bool] = mapped_column(default=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A request header whose value names the end user behind a shared key (e.g. X-OpenWebUI-User-Id).
    end_user_header: Mapped[str | None] = mapped_column(sa.String(100))
    # A personal key's owner (docs/contract.md §14): the user is its identity for limits and fair
    # share. None: a key the admin made for an application. Deleting the user deletes their keys.
    owner_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)

    owner: Mapped[User | None] = relationship(foreign_keys=[owner_id], lazy="joined")


class PasswordReset(Base):
    """A single-use link an admin made for a user to set a new password (docs/contract.md §14)."""

    __tablename__ = "password_resets"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(foreign_keys=[user_id], lazy="joined")


class WhitelistEntry(PolicyColumns, Base):
    __tablename__ = "whitelist_entries"
    __table_args__ = NEVER_REUSED_IDS

    id: Mapped[int] = mapped_column(primary_key=True)
    ip: Mapped[str] = mapped_column(sa.String(64), unique=True)  # normalised IP or CIDR
    label: Mapped[str] = mapped_column(sa.String(100), default="")
    priority: Mapped[int] = mapped_column()
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEntry(Base):
    """One admin change (docs/contract.md §7): who did what to what, and what changed (never a secret)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str | None] = mapped_column(sa.String(100))  # a username, kept if the user goes
    action: Mapped[str] = mapped_column(sa.String(64), index=True)  # <thing>.<verb>, e.g. apikey.update
    target: Mapped[str | None] = mapped_column(sa.String(100))  # <thing>:<id>, e.g. apikey:3
    changes: Mapped[dict] = mapped_column(sa.JSON, default=dict)


class LoginFailure(Base):
    """One failed login, counted per account and per IP for the lockout."""

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(100), index=True)
    ip: Mapped[str] = mapped_column(sa.String(64), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class RequestLog(Base):
    """Exactly one row per proxied request, whatever its end."""

    __tablename__ = "request_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    request_id: Mapped[str] = mapped_column(sa.String(64))
    source: Mapped[str | None] = mapped_column(sa.String(16), index=True)
    api_key_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("api_keys.id", ondelete="SET NULL"), index=True
    )
    whitelist_entry_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("whitelist_entries.id", ondelete="SET NULL")
    )
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"), index=True)
    client_ip: Mapped[str | None] = mapped_column(sa.String(64))
    method: Mapped[str] = mapped_column(sa.String(8))
    endpoint: Mapped[str] = mapped_column(sa.String(200))
    model: Mapped[str | None] = mapped_column(sa.String(200), index=True)
    backend: Mapped[str | None] = mapped_column(sa.String(200))
    status: Mapped[int] = mapped_column(index=True)
    stage: Mapped[str | None] = mapped_column(sa.String(16))  # where a 499/error ended: queued, streaming…
    error: Mapped[str | None] = mapped_column(sa.String(500))
    queue_wait_ms: Mapped[float | None] = mapped_column(sa.Float)
    ttfb_ms: Mapped[float | None] = mapped_column(sa.Float)
    duration_ms: Mapped[float | None] = mapped_column(sa.Float)
    prompt_tokens: Mapped[int | None] = mapped_column()
    completion_tokens: Mapped[int | None] = mapped_column()
    # Refusals without an identity are collapsed per client IP and minute (README "Request log"):
    # one row may stand for this many requests.
    repeats: Mapped[int] = mapped_column(default=1, server_default="1")
    # The display prefix of an API key that was refused (unknown, revoked, malformed); never the key.
    key_prefix: Mapped[str | None] = mapped_column(sa.String(16))
    # The person behind a shared key, from the key's end_user_header (README "End users behind a shared key").
    end_user: Mapped[str | None] = mapped_column(sa.String(200))
    # GPU time (docs/contract.md §13): how long it held a slot, dispatch to last byte or failure
    # (None: it never held one); Ollama's load_duration when its final chunk reported one.
    gpu_ms: Mapped[float | None] = mapped_column(sa.Float)
    load_ms: Mapped[float | None] = mapped_column(sa.Float)
    # docs/contract.md §12: whether Ollama's load_duration showed a model load, and whether the
    # gateway changed the body's load options or keep_alive (a model profile or LOAD_OPTIONS).
    model_loaded: Mapped[bool | None] = mapped_column()
    adjusted: Mapped[bool] = mapped_column(default=False, server_default=sa.false())


class ModelProfileRow(Base):
    """A model's profile (docs/contract.md §12), keyed by the normalised model name."""

    __tablename__ = "model_profiles"

    model: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    load_options: Mapped[str | dict] = mapped_column(sa.JSON, default="client")  # client, server or keys
    keep_alive: Mapped[str | float | None] = mapped_column(sa.JSON)  # as given: seconds or "30m"
    keep_alive_min: Mapped[str | float | None] = mapped_column(sa.JSON)
    keep_alive_max: Mapped[str | float | None] = mapped_column(sa.JSON)
    max_parallel: Mapped[int | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ChangeMarker(Base):
    """One row whose ``version`` database triggers move on every write the identity cache reads.

    The gateway reloads keys, whitelist, users, tokens and profiles only when it moved
    (migration ``0013_change_marker``; proxy_app/identity_cache.py).
    """

    __tablename__ = "change_marker"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(sa.BigInteger)


class Conversation(Base):
    """One user's chat (docs/contract.md §9): only its owner may ever read it."""

    __tablename__ = "conversations"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(sa.String(200), default="")
    model: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class ChatMessage(Base):
    """One message of a conversation; prompts and answers live here, never in the request log."""

    __tablename__ = "chat_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        sa.ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(sa.String(16))  # user | assistant
    content: Mapped[str] = mapped_column(sa.Text, default="")
    # complete | stopped (the user pressed Stop or left) | error (the answer broke off)
    status: Mapped[str] = mapped_column(sa.String(16), default="complete")
    error: Mapped[str | None] = mapped_column(sa.String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
