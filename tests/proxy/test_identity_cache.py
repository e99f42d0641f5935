"""The in-memory copy of keys, whitelist, users and tokens, and its refresh from the database."""

from __future__ import annotations

import ipaddress
from datetime import timedelta

import pytest
import sqlalchemy as sa

from common.db import make_async_engine
from common.models import AccessToken, APIKey, ModelProfileRow, User, WhitelistEntry, utcnow
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


async def _reloads_after(cache: IdentityCache, write) -> int:
    before = cache.reloads
    write()
    await cache.refresh()
    return cache.reloads - before


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_it_reads_the_tables_again_only_when_the_change_marker_moved(
    settings_factory, accounts, database
):
    if database == "postgresql":
        from tests.postgres import own_postgres_database

        with own_postgres_database() as url:
            await _marker_rules(settings_factory(database_url=url), accounts)
    else:
        await _marker_rules(settings_factory(), accounts)


async def _marker_rules(settings, accounts) -> None:
    db = accounts(settings)
    engine = make_async_engine(settings.database_url)
    cache = IdentityCache(engine, settings, interval=3600, flush_interval=3600)
    try:
        await cache.start()
        assert cache.reloads == 1
        for _ in range(5):
            await cache.refresh()  # nothing written: one query each, no reload
        assert cache.reloads == 1
        key = db.key(name="marker")
        user_id = db.user("marker-user")
        await cache.refresh()
        assert cache.reloads == 2 and cache.snapshot.find_key(hash_secret(key)) is not None

        def write(statement):
            def go():
                with db.sessions.begin() as session:
                    session.execute(statement)

            return go

        key_id = cache.snapshot.find_key(hash_secret(key)).id
        # What the cache and a login write themselves moves nothing.
        quiet = [
            write(sa.update(APIKey).where(APIKey.id == key_id).values(last_used=utcnow())),
            write(sa.update(User).where(User.id == user_id).values(last_login_at=utcnow())),
        ]
        for change in quiet:
            assert await _reloads_after(cache, change) == 0
        # Every write the snapshot holds moves it: keys, whitelist, users, tokens, model profiles.
        loud = [
            write(sa.update(APIKey).where(APIKey.id == key_id).values(rpm=7)),
            lambda: db.revoke_key(key),
            lambda: db.whitelist("10.9.0.0/16"),
            write(sa.delete(WhitelistEntry)),
            write(sa.update(User).where(User.id == user_id).values(is_active=False)),
            write(sa.update(User).where(User.id == user_id).values(models=["llama3.2"])),
            lambda: add_token(db, user_id),
            write(
                sa.insert(ModelProfileRow).values(
                    model="m:latest", load_options="client", updated_at=utcnow()
                )
            ),
            write(sa.update(ModelProfileRow).values(max_parallel=2)),
            write(sa.delete(AccessToken)),
        ]
        for number, change in enumerate(loud):
            assert await _reloads_after(cache, change) == 1, number
        assert cache.snapshot.find_key(hash_secret(key)) is None and cache.snapshot.profiles
    finally:
        await cache.close()
        await engine.dispose()
