"""Fixtures shared by every test package: settings on a temp database, services."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from common.db import upgrade
from common.security import password_hasher_for_tests
from common.settings import Settings

TEST_SECRET = "test-secret-key-not-for-production-0123456789"


def settings_env(tmp_path, **overrides) -> dict[str, str]:
    """A ``SEADRAGON_*`` environment on a SQLite file under ``tmp_path``."""
    env = {
        "SEADRAGON_INSTANCE_DIR": str(tmp_path / "instance"),
        "SEADRAGON_DATABASE_URL": f"sqlite:///{tmp_path / 'seadragon.db'}",
        "SEADRAGON_SECRET_KEY": TEST_SECRET,
        # One stdout line per request would flood the test output; tests of the access log set it.
        "SEADRAGON_ACCESS_LOG": "off",
    }
    env.update({f"SEADRAGON_{key.upper()}": str(value) for key, value in overrides.items()})
    return env


# argon2id at its minimum cost: a hash takes microseconds instead of ~0.1 s of CPU.
CHEAP_PASSWORD_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture
def cheap_password_hashing(request):
    """Cheap argon2 in this process for every test on ``settings_factory``, unless marked ``product_argon2``.

    Unit tests of ``common.security`` that take no database keep the product's parameters.
    """
    if request.node.get_closest_marker("product_argon2"):
        yield
        return
    with password_hasher_for_tests(CHEAP_PASSWORD_HASHER):
        yield


@pytest.fixture(scope="session")
def migrated_sqlite_template(tmp_path_factory) -> Path:
    """A SQLite file migrated to head once per session, copied for each test that needs a database."""
    path = tmp_path_factory.mktemp("template") / "seadragon.db"
    upgrade(f"sqlite:///{path}")
    with sqlite3.connect(path) as connection:
        # Everything into the main file, so copying that one file copies the whole schema.
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.execute("PRAGMA journal_mode=DELETE")
    connection.close()
    return path


@pytest.fixture
def settings_factory(tmp_path, migrated_sqlite_template, cheap_password_hashing) -> Callable[..., Settings]:
    """Make migrated settings; keyword overrides name variables without the prefix."""
    default_url = settings_env(tmp_path)["SEADRAGON_DATABASE_URL"]
    default_file = tmp_path / "seadragon.db"

    def make(**overrides) -> Settings:
        settings = Settings.from_env(settings_env(tmp_path, **overrides))
        if settings.database_url == default_url and not default_file.exists():
            shutil.copyfile(migrated_sqlite_template, default_file)  # the test's own fresh database
        else:
            upgrade(settings.database_url)  # another database (PostgreSQL, a named file) or a second call
        return settings

    return make


@pytest.fixture
def settings(settings_factory) -> Settings:
    """Default test settings on a fresh, migrated SQLite file."""
    return settings_factory()


def require_service(env_name: str) -> str:
    """The URL of a service CI starts (Redis, PostgreSQL): in CI it must be there."""
    url = os.environ.get(env_name)
    if not url:
        message = f"{env_name} is not set (run scripts/ci-services.sh and source .ci/services.env)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return url


def fresh_redis_url(db: int) -> str:
    """The URL of Redis database ``db`` on the test server, emptied first."""
    import redis

    url = require_service("SEADRAGON_TEST_REDIS_URL").rsplit("/", 1)[0] + f"/{db}"
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
    return url
