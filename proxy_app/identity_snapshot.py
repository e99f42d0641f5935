"""What the identity cache holds: a snapshot of keys, whitelist, users, tokens and model profiles,
and the queries that read it from the database (docs/contract.md §4, §7, §12, §14).

A :class:`Snapshot` is replaced whole by :class:`proxy_app.identity_cache.IdentityCache`, so a
request never sees half of one; every lookup on it is a dictionary lookup of a SHA-256 hash.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from common.model_profiles import ModelProfile, validate_profile
from common.models import (
    AccessToken,
    APIKey,
    ChangeMarker,
    ModelProfileRow,
    User,
    WhitelistEntry,
    utcnow,
)
from common.network import Whitelist, WhitelistRule, normalise_network
from common.policies import Policy, effective_user_policy
from common.sessions import parse_user_reference
from common.settings import Settings
from common.sources import KeyInfo, UserInfo, who_of

log = logging.getLogger("seadragon.gateway")

NO_POLICY = Policy()
# The policy columns (docs/contract.md §7) read with each key, whitelist entry and user.
_KEY_POLICY = (
    APIKey.models,
    APIKey.rpm,
    APIKey.max_queued,
    APIKey.max_concurrent,
    APIKey.daily_tokens,
    APIKey.daily_gpu_seconds,
)
_ENTRY_POLICY = tuple(getattr(WhitelistEntry, column.key) for column in _KEY_POLICY)
_USER_POLICY = tuple(getattr(User, column.key) for column in _KEY_POLICY)


@dataclass(frozen=True)
class UserRecord:
    """A user as the gateway needs it."""

    id: int
    username: str
    is_admin: bool
    is_active: bool
    session_version: int


@dataclass(frozen=True)
class TokenRecord:
    """An access token (by hash) and the session version it was issued under."""

    user_id: int
    session_version: int
    expires_at: datetime


@dataclass(frozen=True)
class Snapshot:
    """One consistent view of keys, whitelist, users and access tokens."""

    keys: dict[str, KeyInfo] = field(default_factory=dict)
    whitelist: Whitelist = field(default_factory=lambda: Whitelist(()))
    users: dict[int, UserRecord] = field(default_factory=dict)
    tokens: dict[str, TokenRecord] = field(default_factory=dict)
    # Only identities with a policy: "key:3", "ip:7", "user:12" (common.sources.who_of).
    policies: dict[str, Policy] = field(default_factory=dict)
    # Model profiles by normalised model name (docs/contract.md §12).
    profiles: dict[str, ModelProfile] = field(default_factory=dict)

    def policy_of(self, who: str) -> Policy:
        """The policy of an identity (a user's with WEBCHAT_* filled in); no limits if it has none."""
        return self.policies.get(who, NO_POLICY)

    def find_key(self, key_hash: str) -> KeyInfo | None:
        """An active key by the SHA-256 of its secret."""
        return self.keys.get(key_hash)

    def find_token_user(self, token_hash: str) -> UserInfo | None:
        """The active user behind an unexpired, current access token."""
        token = self.tokens.get(token_hash)
        if token is None or token.expires_at <= utcnow():
            return None
        return self._current_user(token.user_id, token.session_version)

    def session_user(self, reference: object) -> UserInfo | None:
        """The active user named by a session's ``_user_id``, if its version is current."""
        parsed = parse_user_reference(reference)
        if parsed is None:
            return None
        return self._current_user(*parsed)

    def _current_user(self, user_id: int, session_version: int) -> UserInfo | None:
        user = self.users.get(user_id)
        if user is None or not user.is_active or user.session_version != session_version:
            return None
        return UserInfo(id=user.id, username=user.username, is_admin=user.is_admin)


def _policy(row: sa.Row, *, user_of: Settings | None = None) -> Policy:
    policy = Policy.of(row)
    # A user's unset rpm / daily_tokens are WEBCHAT_RPM / WEBCHAT_DAILY_TOKENS (docs/contract.md §7).
    return effective_user_policy(policy, user_of) if user_of is not None else policy


def with_policy(policies: dict[str, Policy], who: str | None, policy: Policy) -> None:
    if who is not None and policy != NO_POLICY:
        policies[who] = policy


def _live_keys(*columns: sa.ColumnElement) -> sa.Select:
    """Active, unrevoked keys; a personal key only while its owner is active (docs/contract.md §14)."""
    return (
        sa.select(*columns)
        .outerjoin(User, User.id == APIKey.owner_id)
        .where(
            APIKey.is_active.is_(True),
            APIKey.revoked_at.is_(None),
            sa.or_(APIKey.owner_id.is_(None), User.is_active.is_(True)),
        )
    )


async def read_marker(engine: AsyncEngine) -> int | None:
    """The change marker: database triggers move it on every write a snapshot holds (0013)."""
    async with engine.connect() as conn:
        return await conn.scalar(sa.select(ChangeMarker.version).where(ChangeMarker.id == 1))


async def load_snapshot(engine: AsyncEngine, settings: Settings) -> Snapshot:
    """Read the four tables, with each identity's policy, into a fresh :class:`Snapshot`."""
    policies: dict[str, Policy] = {}
    async with engine.connect() as conn:
        keys = await conn.execute(
            _live_keys(
                APIKey.id,
                APIKey.key_hash,
                APIKey.priority,
                APIKey.name,
                APIKey.expires_at,
                APIKey.end_user_header,
                APIKey.owner_id,
                *_KEY_POLICY,
            )
        )
        entries = await conn.execute(
            sa.select(WhitelistEntry.id, WhitelistEntry.ip, WhitelistEntry.priority, *_ENTRY_POLICY)
        )
        users = await conn.execute(
            sa.select(
                User.id, User.username, User.is_admin, User.is_active, User.session_version, *_USER_POLICY
            )
        )
        tokens = await conn.execute(
            sa.select(
                AccessToken.token_hash,
                AccessToken.user_id,
                AccessToken.session_version,
                AccessToken.expires_at,
            ).where(AccessToken.expires_at > utcnow())
        )
        profiles = await conn.execute(sa.select(*ModelProfileRow.__table__.columns))
        rules = []
        for entry in entries:
            try:
                rules.append(WhitelistRule(entry.id, normalise_network(entry.ip), entry.priority))
            except ValueError:
                log.warning("whitelist entry %s has an unreadable address %r; ignored", entry.id, entry.ip)
                continue
            with_policy(policies, who_of(whitelist_entry_id=entry.id), _policy(entry))
        key_infos = {}
        for key in keys:
            key_infos[key.key_hash] = KeyInfo(
                key.id, key.priority, key.name, key.end_user_header, key.owner_id
            )
            with_policy(policies, who_of(api_key_id=key.id), _policy(key))
        user_records = {}
        for user in users:
            user_records[user.id] = UserRecord(*user[:5])
            with_policy(policies, who_of(user_id=user.id), _policy(user, user_of=settings))
        return Snapshot(
            keys=key_infos,
            whitelist=Whitelist(rules),
            users=user_records,
            tokens={row.token_hash: TokenRecord(*row[1:]) for row in tokens},
            policies=policies,
            profiles=read_profiles(profiles),
        )


def read_profiles(rows: sa.Result) -> dict[str, ModelProfile]:
    """The stored profiles, each checked again (a row written by hand must not break the proxy)."""
    profiles = {}
    for row in rows:
        try:
            profiles[row.model] = validate_profile(
                {
                    "load_options": row.load_options,
                    "keep_alive": row.keep_alive,
                    "keep_alive_min": row.keep_alive_min,
                    "keep_alive_max": row.keep_alive_max,
                    "max_parallel": row.max_parallel,
                }
            )
        except ValueError as exc:
            log.warning("model profile %r is unreadable (%s); ignored", row.model, exc)
    return profiles


async def load_key(engine: AsyncEngine, key_hash: str) -> tuple[KeyInfo, Policy] | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                _live_keys(
                    APIKey.id,
                    APIKey.priority,
                    APIKey.name,
                    APIKey.expires_at,
                    APIKey.end_user_header,
                    APIKey.owner_id,
                    *_KEY_POLICY,
                ).where(APIKey.key_hash == key_hash)
            )
        ).first()
    if row is None:
        return None
    return KeyInfo(row.id, row.priority, row.name, row.end_user_header, row.owner_id), _policy(row)


async def load_token(
    engine: AsyncEngine, token_hash: str, settings: Settings
) -> tuple[TokenRecord, UserRecord, Policy] | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(
                    AccessToken.user_id,
                    AccessToken.session_version,
                    AccessToken.expires_at,
                    User.username,
                    User.is_admin,
                    User.is_active,
                    User.session_version.label("user_version"),
                    *_USER_POLICY,
                )
                .join(User, User.id == AccessToken.user_id)
                .where(AccessToken.token_hash == token_hash, AccessToken.expires_at > utcnow())
            )
        ).first()
    if row is None:
        return None
    token = TokenRecord(row.user_id, row.session_version, row.expires_at)
    user = UserRecord(row.user_id, row.username, row.is_admin, row.is_active, row.user_version)
    return token, user, _policy(row, user_of=settings)
