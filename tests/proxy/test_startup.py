"""Start-up builds the gateway whole or not at all (issue 20): a failed start leaves nothing running."""

from __future__ import annotations

import asyncio
import os

import pytest
from quart.testing.app import LifespanError

from common.settings import Settings
from proxy_app import create_app
from proxy_app.gateway import EXTENSION
from tests.conftest import settings_env
from tests.live import free_port


def _open_fds() -> set[str]:
    # Sockets and files alike: a connection left open shows up here.
    return {os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd") if _exists(fd)}


def _exists(fd: str) -> bool:
    try:
        os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return False
    return True


async def _start_fails(settings: Settings) -> str:
    """Start an app on ``settings``; the start must fail, leaving no task and no descriptor behind."""
    tasks_before = asyncio.all_tasks()
    fds_before = _open_fds()
    app = create_app(settings=settings, test_config={"SEADRAGON_HEALTH_INTERVAL": 0.05})
    with pytest.raises(LifespanError) as failed:  # the lifespan's StartupError, as Quart reports it
        async with app.test_app():
            pass
    await asyncio.sleep(0.2)  # a loop left running would have ticked (health checks every 0.05 s)
    left = {task for task in asyncio.all_tasks() - tasks_before if not task.done()}
    assert left == set(), [task.get_name() for task in left]
    assert _open_fds() - fds_before == set()
    assert EXTENSION not in app.extensions
    return str(failed.value)


async def test_an_unmigrated_database_fails_the_start_with_one_clear_error(tmp_path, sim):
    settings = Settings.from_env(settings_env(tmp_path, ollama_urls=f"{sim.url}=1"))  # an empty file
    error = await _start_fails(settings)
    assert "is it migrated?" in error
    assert "no such table" in error


async def test_an_unreachable_redis_fails_the_start_and_stops_the_health_checks(settings_factory, sim):
    # Nothing listens on a just-freed local port: every connection is refused.
    settings = settings_factory(ollama_urls=f"{sim.url}=1", redis_url=f"redis://127.0.0.1:{free_port()}/0")
    error = await _start_fails(settings)
    assert "the gateway could not start" in error
    assert "ConnectionError" in error
