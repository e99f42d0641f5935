"""The in-memory copy of keys, whitelist, users and tokens, and its refresh from the database."""

from __future__ import annotations

import ipaddress
from datetime import timedelta

import pytest
import sqlalchemy as sa

from common.db import make_async_engine
from common.models import AccessToken, utcnow
from common.security import hash_secret, new_secret
from common.sources import Credentials
from proxy_app.identity_cache import IdentityCache


@pytest.fixture
async def cache_world(settings, accounts):
    """A started cache (no background loops needed: refreshed by hand) and the accounts behind it."""
    db = accounts(settings)
    engine = make_async_engine(settings.database_url)
    cache = IdentityCache(engine, settings, interval=3600, flush_interval=3600)
    await cache.start()
    yield cache, db
    await cache.close()
    await engine.dispose()


def add_token(db, user_id: int, *, version: int = 1, hours: float = 1) -> str:
    """An access token row; returns the secret."""
    secret = new_secret("sda_")
    with db.sessions.begin() as session:
        session.add(
            AccessToken(
                token_hash=hash_secret(secret),
                user_id=user_id,
                session_version=version,
                expires_at=utcnow() + timedelta(hours=hours),
            )
        )
    return secret


async def test_it_knows_active_keys_only(cache_world):
    cache, db = cache_world
    kept, revoked = db.key(name="kept", priority=3), db.key(name="gone")
    db.revoke_key(revoked)
    await cache.refresh()
    assert cache.snapshot.find_key(hash_secret(kept)).priority == 3
    assert cache.snapshot.find_key(hash_secret(revoked)) is None


async def test_it_matches_whitelist_entries(cache_world):
    cache, db = cache_world
    entry = db.whitelist("10.1.0.0/16", priority=9)
    await cache.refresh()
    rule = cache.snapshot.whitelist.match(ipaddress.ip_address("10.1.2.3"))
    assert (rule.id, rule.priority) == (entry, 9)


async def test_tokens_need_an_active_user_of_the_same_session_version(cache_world):
    cache, db = cache_world
    alice = db.user("alice")
    current, expired, stale = (
        add_token(db, alice),
        add_token(db, alice, hours=-1),
        add_token(db, alice, version=0),
    )
    await cache.refresh()
    assert cache.snapshot.find_token_user(hash_secret(current)).username == "alice"
    assert cache.snapshot.find_token_user(hash_secret(expired)) is None
    assert cache.snapshot.find_token_user(hash_secret(stale)) is None
    db.end_sessions(alice)
    await cache.refresh()
    assert cache.snapshot.find_token_user(hash_secret(current)) is None


async def test_a_session_reference_must_carry_the_current_version(cache_world):
    cache, db = cache_world
    alice = db.user("alice")
    await cache.refresh()
    assert cache.snapshot.session_user(f"{alice}:1").id == alice
    assert cache.snapshot.session_user(f"{alice}:2") is None
    assert cache.snapshot.session_user("garbage") is None
    assert cache.snapshot.session_user(None) is None


async def test_listeners_hear_every_refresh(cache_world):
    cache, db = cache_world
    heard = []
    cache.on_refresh(lambda snapshot: heard.append(len(snapshot.keys)))
    db.key()
    await cache.refresh()
    assert heard == [1]


async def test_a_failed_refresh_keeps_the_last_good_snapshot(cache_world):
    cache, db = cache_world
    key = db.key()
    await cache.refresh()
    with db.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE api_keys RENAME TO api_keys_away"))
    await cache.refresh()
    assert cache.snapshot.find_key(hash_secret(key)) is not None


async def test_it_learns_a_key_or_token_made_since_the_last_refresh(cache_world):
    cache, db = cache_world
    alice = db.user("alice")
    key, revoked = db.key(), db.key()
    db.revoke_key(revoked)
    token = add_token(db, alice)
    await cache.learn(Credentials(api_key=key))
    await cache.learn(Credentials(api_key=revoked))
    await cache.learn(Credentials(user_token=token))
    assert cache.snapshot.find_key(hash_secret(key)) is not None
    assert cache.snapshot.find_key(hash_secret(revoked)) is None
    assert cache.snapshot.find_token_user(hash_secret(token)).id == alice


async def test_key_usage_is_written_in_one_batch(cache_world):
    cache, db = cache_world
    first, second = db.key(name="a"), db.key(name="b")
    await cache.refresh()
    for secret in (first, second, first):
        cache.touch_key(cache.snapshot.find_key(hash_secret(secret)).id)
    assert db.key_last_used(first) is None
    await cache.flush_usage()
    assert db.key_last_used(first) is not None and db.key_last_used(second) is not None
