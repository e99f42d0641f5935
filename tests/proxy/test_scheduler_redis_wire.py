"""The Redis scheduler's config is encoded once per change, not on every script call (issue 20)."""

from __future__ import annotations

import json
import timeit
from pathlib import Path

from common.settings import Backend, Settings
from proxy_app.backends import BackendPool
from proxy_app.scheduler_redis_wire import ScriptConfig, script_config


def make_settings() -> Settings:
    return Settings(database_url="sqlite://", secret_key="test", instance_dir=Path("/nonexistent"))


def make_pool() -> BackendPool:
    backends = [Backend(f"http://gpu{i}:11434", 2) for i in range(4)]
    pool = BackendPool(backends, client=None, interval=3600, timeout=1, failures=2)  # type: ignore[arg-type]
    for number, backend in enumerate(pool.backends):
        backend.models = frozenset({f"model{m}:latest" for m in range(number, number + 30)})
        backend.loaded = frozenset({f"model{number}:latest"})
    return pool


def test_the_config_is_encoded_once_until_a_backend_changes():
    pool, settings = make_pool(), make_settings()
    config = ScriptConfig(pool, settings)
    first = config.current()
    for _ in range(100):
        assert config.current() is first
    assert config.encodes == 1 and first == script_config(pool, settings)
    gpu1 = pool.backends[1]
    for change in (
        lambda: setattr(gpu1, "healthy", False),
        lambda: setattr(gpu1, "healthy", True),
        lambda: setattr(gpu1, "loaded", frozenset({"model9:latest"})),
        lambda: setattr(gpu1, "models", frozenset({"other:latest"})),
        lambda: setattr(gpu1, "capacity", 3),
        lambda: setattr(gpu1, "slots", 5),
    ):
        before = config.encodes
        change()
        assert config.current() == script_config(pool, settings)
        assert config.encodes == before + 1
    assert json.loads(config.current())["backends"]["http://gpu1:11434"] == 5


def test_an_unchanged_config_costs_less_than_encoding_it():
    pool, settings = make_pool(), make_settings()
    config = ScriptConfig(pool, settings)
    config.current()
    cached = min(timeit.repeat(config.current, number=200, repeat=3))
    encoded = min(timeit.repeat(lambda: script_config(pool, settings), number=200, repeat=3))
    assert cached * 5 < encoded, (cached, encoded)
