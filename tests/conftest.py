"""Fixtures shared by every test package: settings on a temp database, services."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from common.db import upgrade
from common.settings import Settings

TEST_SECRET = "test-secret-key-not-for-production-0123456789"


def settings_env(tmp_path, **overrides) -> dict[str, str]:
    """A ``SEADRAGON_*`` environment on a SQLite file under ``tmp_path``."""
    env = {
        "SEADRAGON_INSTANCE_DIR": str(tmp_path / "instance"),
        "SEADRAGON_DATABASE_URL": f"sqlite:///{tmp_path / 'seadragon.db'}",
        "SEADRAGON_SECRET_KEY": TEST_SECRET,
    }
    env.update({f"SEADRAGON_{key.upper()}": str(value) for key, value in overrides.items()})
    return env


@pytest.fixture
def settings_factory(tmp_path) -> Callable[..., Settings]:
    """Make migrated settings; keyword overrides name variables without the prefix."""

    def make(**overrides) -> Settings:
        settings = Settings.from_env(settings_env(tmp_path, **overrides))
        upgrade(settings.database_url)
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
