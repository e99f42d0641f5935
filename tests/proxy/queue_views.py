"""The queue admin view as an administrator reads and cancels it."""

from __future__ import annotations

import httpx

from tests.proxy.queueing import OUTSIDE
from tests.waiting import wait_until

CANCELLED = "cancelled by an administrator"


def view(server, auth: dict) -> list[dict]:
    """``GET /api/admin/queue`` as an admin."""
    response = httpx.get(server.url + "/api/admin/queue", headers={**OUTSIDE, **auth}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def cancel(server, auth: dict, request_id: str) -> httpx.Response:
    """``DELETE /api/admin/queue/{request_id}``."""
    return httpx.delete(f"{server.url}/api/admin/queue/{request_id}", headers={**OUTSIDE, **auth}, timeout=10)


def waiting_row(server, auth: dict) -> dict:
    """The one waiting request, once it waits."""
    return wait_until(lambda: next((r for r in view(server, auth) if r["state"] == "waiting"), None))
