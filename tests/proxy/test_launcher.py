"""The run command (``python asgi.py``): first-run admin, database preparation in a child, start-up errors."""

from __future__ import annotations

import re
import subprocess
import sys

import httpx
import pytest

from tests.conftest import settings_env
from tests.live import ROOT, LiveServer

pytestmark = pytest.mark.slow  # each test starts `python asgi.py` and its bootstrap child

PASSWORD_LINE = re.compile(r"^\s{6}(\S+)$", re.MULTILINE)


@pytest.fixture
def env(tmp_path, sim):
    """A fresh instance in front of the shared simulator, with no admin password given."""
    return settings_env(tmp_path, ollama_urls=f"{sim.url}=1")


def run_once(env: dict[str, str]) -> str:
    """Start the real server, stop it, and return what it printed."""
    server = LiveServer(env).start()
    try:
        return server.output()
    finally:
        server.stop()


def test_first_run_prints_a_generated_admin_password_once_and_it_logs_in(env):
    server = LiveServer(env).start()
    try:
        first = server.output()
        assert "Created the admin account 'admin'" in first
        passwords = PASSWORD_LINE.findall(first)
        assert len(passwords) == 1
        login = httpx.post(
            server.url + "/auth/token", json={"username": "admin", "password": passwords[0]}, timeout=30
        )
        assert login.status_code == 200, login.text
    finally:
        server.stop()
    again = run_once(env)
    assert "Created the admin account" not in again
    assert passwords[0] not in again


def test_a_database_that_cannot_be_prepared_stops_start_up_with_one_clear_line(env, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the database's folder should be")
    env["SEADRAGON_DATABASE_URL"] = f"sqlite:///{blocker / 'seadragon.db'}"
    done = subprocess.run(
        [sys.executable, "asgi.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "seadragon: preparing the database failed" in done.stderr
    assert "Traceback" not in done.stdout


def test_the_bootstrap_child_reports_a_bad_setting_by_name(env):
    env["SEADRAGON_MAX_QUEUE"] = "lots"
    argv = [sys.executable, "-m", "common.bootstrap"]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "SEADRAGON_MAX_QUEUE" in done.stderr
    assert done.stdout == ""
