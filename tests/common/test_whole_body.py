"""common.whole_body: bodies read whole before the app sees them (docs/contract.md §16)."""

from __future__ import annotations

import asyncio
import json

from common.whole_body import WholeBody


class Client:
    """The server side of one request: the messages it hands the app, and what the app sent."""

    def __init__(self, *messages: dict, pause: float = 0.0) -> None:
        self.messages = list(messages)
        self.pause = pause
        self.sent: list[dict] = []

    async def receive(self) -> dict:
        """The next message, ``pause`` seconds apart; then the client stays until it leaves."""
        if not self.messages:
            await asyncio.Event().wait()
        await asyncio.sleep(self.pause)
        return self.messages.pop(0)

    async def send(self, message: dict) -> None:
        """Keep what the app sent."""
        self.sent.append(message)

    @property
    def status(self) -> int:
        """The status the app answered."""
        return self.sent[0]["status"]


def part(body: bytes, more: bool = True) -> dict:
    """One ``http.request`` message."""
    return {"type": "http.request", "body": body, "more_body": more}


def scope(path: str = "/auth/login", length: int | None = None) -> dict:
    """An HTTP request's scope."""
    headers = [] if length is None else [(b"content-length", str(length).encode())]
    return {"type": "http", "path": path, "headers": headers}


def middleware(app, **limits) -> WholeBody:
    """WholeBody with small limits; ``/api/`` paths stream."""
    limits = {"max_body": 100, "timeout": 0.2, **limits}
    return WholeBody(app, streamed=lambda path: path.startswith("/api/"), **limits)


async def test_the_app_receives_the_whole_body_in_one_message_then_the_servers_receive():
    seen = []

    async def app(scope, receive, send) -> None:
        seen.append(await receive())
        seen.append(await asyncio.wait_for(receive(), 0.5))
        await send({"type": "http.response.start", "status": 204, "headers": []})

    client = Client(part(b"user"), part(b"name="), part(b"a", more=False), {"type": "http.disconnect"})
    await middleware(app)(scope(), client.receive, client.send)
    assert seen == [part(b"username=a", more=False), {"type": "http.disconnect"}]
    assert client.status == 204


async def test_a_body_slower_than_the_timeout_is_408_and_the_app_never_runs():
    async def app(scope, receive, send) -> None:
        raise AssertionError("the app must not see a body that did not arrive")

    client = Client(part(b"a"), part(b"b"), part(b"c", more=False), pause=0.15)
    await middleware(app)(scope(), client.receive, client.send)
    assert client.status == 408
    assert (b"connection", b"close") in client.sent[0]["headers"]
    assert "not received within 0.2 s" in json.loads(client.sent[1]["body"])["error"]


async def test_a_body_over_max_body_is_413_by_its_length_or_by_its_bytes():
    async def app(scope, receive, send) -> None:
        raise AssertionError("the app must not see a body over the limit")

    declared = Client()
    await middleware(app)(scope(length=101), declared.receive, declared.send)
    assert declared.status == 413
    sent = Client(part(b"a" * 60), part(b"a" * 41, more=False))
    await middleware(app)(scope(), sent.receive, sent.send)
    assert sent.status == 413
    at_limit = Client(part(b"a" * 100, more=False))
    seen = []

    async def echo(scope, receive, send) -> None:
        seen.append(await receive())
        await send({"type": "http.response.start", "status": 200, "headers": []})

    await middleware(echo)(scope(), at_limit.receive, at_limit.send)
    assert at_limit.status == 200 and seen[0]["body"] == b"a" * 100


async def test_a_client_that_leaves_before_its_body_is_whole_is_not_answered():
    called = []

    async def app(scope, receive, send) -> None:
        called.append(scope)

    client = Client(part(b"a"), {"type": "http.disconnect"})
    await middleware(app)(scope(), client.receive, client.send)
    assert called == [] and client.sent == []


async def test_streamed_paths_and_other_scopes_reach_the_app_untouched():
    seen = []

    async def app(scope, receive, send) -> None:
        seen.append((scope["type"], await receive()))

    for kind, path in (("http", "/api/chat"), ("lifespan", "")):
        client = Client(part(b"a"))
        await middleware(app)({"type": kind, "path": path, "headers": []}, client.receive, client.send)
    assert seen == [("http", part(b"a")), ("lifespan", part(b"a"))]
