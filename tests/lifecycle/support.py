"""Real gateways (``python asgi.py``) for the lifecycle tests: start, authenticate, signal, read the log."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import httpx

from bench.procs import process_tree
from tests.conftest import settings_env
from tests.live import LiveServer

ADMIN_PASSWORD = "lifecycle-admin-password"


def gateway_env(tmp_path: Path, **overrides: object) -> dict[str, str]:
    """A gateway environment on its own SQLite file with a known admin password."""
    return settings_env(tmp_path, admin_password=ADMIN_PASSWORD, **overrides)


def db_path(env: dict[str, str]) -> Path:
    """The SQLite file of a gateway environment."""
    return Path(env["SEADRAGON_DATABASE_URL"].removeprefix("sqlite:///"))


def admin_headers(url: str) -> dict[str, str]:
    """A Bearer access token for the admin JSON API."""
    response = httpx.post(
        f"{url}/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD}, timeout=30
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def api_key(url: str, admin: dict[str, str], name: str = "lifecycle", priority: int = 2) -> str:
    """A new API key (its secret)."""
    response = httpx.post(
        f"{url}/api/admin/apikeys", json={"name": name, "priority": priority}, headers=admin
    )
    assert response.status_code == 201, response.text
    return response.json()["key"]


def stats(url: str, admin: dict[str, str]) -> dict:
    """``GET /api/admin/stats``."""
    response = httpx.get(f"{url}/api/admin/stats", headers=admin, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def children(pid: int) -> list[int]:
    """The ids of the processes ``pid`` started, and theirs."""
    return process_tree(pid)[1:]


def alive(pid: int) -> bool:
    """True if process ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def signal_and_wait(server: LiveServer, signum: int, timeout: float = 60) -> int:
    """Send ``signum`` to the gateway and return its exit status."""
    assert server.process is not None
    server.process.send_signal(signum)
    return server.process.wait(timeout)


def log_rows(path: Path) -> list[sqlite3.Row]:
    """Every request-log row of a gateway's SQLite file."""
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute("SELECT request_id, endpoint, status, stage, error FROM request_log").fetchall()


SIGNALS = {"SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT}
