"""An in-memory Ollama (an httpx.MockTransport handler) that records what reached it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from tests.proxy.support import chat_body

CHAT_STREAM = (
    b'{"model":"llama3.2","created_at":"2026-01-01T00:00:00Z","message":{"role":"assistant","content":"Hi"},'
    b'"done":false}\n'
    b'{"model":"llama3.2","created_at":"2026-01-01T00:00:01Z","message":{"role":"assistant","content":""},'
    b'"done":true,"done_reason":"stop","prompt_eval_count":3,"eval_count":1}\n'
)


class FakeOllama:
    """Answers like Ollama for a few paths; ``requests`` holds everything it received."""

    def __init__(self, models: tuple[str, ...] = ("llama3.2:latest",)) -> None:
        self.models = models
        self.requests: list[httpx.Request] = []
        self.overrides: dict[str, Callable[[httpx.Request], httpx.Response]] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path in self.overrides:
            return self.overrides[path](request)
        if path == "/api/tags":
            return httpx.Response(200, json={"models": [{"name": m, "model": m} for m in self.models]})
        if path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [{"id": m} for m in self.models]})
        if path in ("/api/chat", "/api/generate"):
            return httpx.Response(200, content=CHAT_STREAM, headers={"Content-Type": "application/x-ndjson"})
        if path in ("/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete", "/api/show"):
            return httpx.Response(200, json={"status": "success"})
        if path.startswith("/api/blobs/"):
            return httpx.Response(201 if request.method == "POST" else 200)
        if path == "/api/version":
            return httpx.Response(200, json={"version": "0.12.6"})
        return httpx.Response(404, text="404 page not found")

    def paths(self, *, health: bool = False) -> list[str]:
        """Paths received, without the health checks (/api/tags, /api/ps) unless asked."""
        return [r.url.path for r in self.requests if health or r.url.path not in ("/api/tags", "/api/ps")]

    def last(self, path: str) -> httpx.Request:
        """The last request to ``path``."""
        return [r for r in self.requests if r.url.path == path][-1]


async def chat_request(client: Any, ip: str, *, headers: dict | None = None, body: Any = None) -> Any:
    """POST /api/chat (non-streamed) through a Quart test client, from ``ip``."""
    return await call(client, "POST", "/api/chat", ip, headers=headers, json=body or chat_body(stream=False))


async def call(client: Any, method: str, path: str, ip: str, **kwargs: Any) -> Any:
    """Any request through a Quart test client, as if from ``ip``."""
    return await client.open(path, method=method, scope_base={"client": (ip, 50000)}, **kwargs)


def body_of(request: httpx.Request) -> dict:
    """The JSON body a request carried upstream."""
    return json.loads(request.content)
