"""Requests against a served one-slot gateway: who calls from where, occupying the slot, submitting."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import httpx

from tests.proxy.support import chat_body

DIRECT = {"X-Forwarded-For": "10.0.0.5"}  # whitelisted


OUTSIDE = {"X-Forwarded-For": "10.9.9.9"}  # not whitelisted


HOLD = {"X-Sim-First-Token-Delay": "1.5"}  # keeps the only slot busy for a while


def post(
    server, headers: dict, body: dict | None = None, path: str = "/api/chat", timeout: float = 30
) -> httpx.Response:
    """One request to the gateway."""
    return httpx.post(
        server.url + path, json=body or chat_body(stream=False), headers=headers, timeout=timeout
    )


def submit(
    pool: ThreadPoolExecutor, server, headers: dict, body: dict | None = None, path: str = "/api/chat"
) -> Future:
    """Send a request in the background."""
    return pool.submit(post, server, headers, body, path)


def occupy(pool, server, sim, hold: dict = HOLD) -> Future:
    """Take the only slot with a slow request and wait until Ollama has it."""
    blocker = submit(pool, server, {**DIRECT, **hold, "X-Who": "blocker"})
    server.wait_for(lambda s: s["active_requests"] == 1)
    sim.wait_for(lambda s: s["active"] == 1)
    return blocker
