"""The web chat's answers (docs/contract.md §9): one queued ``/api/chat`` generation per reply.

``POST /chat/api/reply`` with ``{"conversation_id", "content", "model"}`` stores the
user's message, sends the whole conversation through the gateway's queued path
(classification from the session cookie alone, so the source is always
``web_chat``; the user's queue place, slot and one request-log row), and streams
NDJSON events to the browser:

    {"type": "queued", "position": 2, "eta_s": null}   while waiting (eta_s null when unknown)
    {"type": "started"}                                 a slot is granted, Ollama answers
    {"type": "token", "content": "Hel"}                 the answer as it comes
    {"type": "done", "status": "complete"|"stopped"|"error", "error": null, "message_id": 7}

The assistant's message is stored when the stream ends — the partial answer when
the browser stops it (the fetch is aborted: the request leaves the queue or its
upstream closes, as for any client that leaves) or when it breaks off. Prompts and
answers go only to the conversation tables, never to the request log.

:class:`QueuedChat` is the only code here that touches the queued path: it drives one
:class:`~proxy_app.proxied.ProxiedRequest` through its steps (enqueue, queue_position and queue_eta while
waiting, wait_for_slot, open, relay, close), which writes the request's one log row.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from quart import Blueprint, Request, Response, g, request

from common import chat
from common.access_log import WRITES_OWN_LINE
from common.db import make_async_sessionmaker
from common.sessions import (
    SESSION_COOKIE_NAME,
    SESSION_LIFETIME_SECONDS,
    csrf_token_valid,
    read_session_cookie,
)
from common.sources import Credentials
from proxy_app.bodies import parse_object, read_body
from proxy_app.classify import Principal, principal_of
from proxy_app.errors import ProxyError
from proxy_app.gateway import Gateway, gateway, on_request_end
from proxy_app.headers import forward_headers
from proxy_app.proxied import ProxiedRequest
from proxy_app.routes import resolve
from proxy_app.upstream import Exchange, error_message

bp = Blueprint("chat_stream", __name__)

POSITION_POLL = 0.25  # seconds between queue-position checks while waiting
CHAT_PATH = "/api/chat"


def event(kind: str, **fields: object) -> bytes:
    """One NDJSON event line."""
    return json.dumps({"type": kind, **fields}).encode() + b"\n"


class QueuedChat:
    """One chat generation: a :class:`~proxy_app.proxied.ProxiedRequest` driven step by step."""

    def __init__(self, proxied: ProxiedRequest, payload: dict) -> None:
        self.proxied = proxied
        self.model: str = payload["model"]
        self.body = json.dumps(payload).encode()

    async def chunks(self) -> AsyncIterator[tuple[str, object]]:
        """``("queued", (position, eta_s))`` while waiting, ``("started", None)``, then Ollama's bytes.

        Raises :class:`ProxyError` when the queue or Ollama refuses (noted on the request's row).
        """
        proxied = self.proxied
        task = proxied.enqueue(self.model)
        last = None
        while not task.done():
            position, eta = proxied.queue_position(), proxied.queue_eta()
            if position is not None and (position, eta) != last:
                last = position, eta
                yield "queued", last
            await asyncio.wait({task}, timeout=POSITION_POLL)
        grant = await proxied.wait_for_slot(task)
        headers = forward_headers([("Content-Type", "application/json")])
        exchange = await proxied.open(
            grant.backend.url, "POST", proxied.route.upstream_path, self.body, headers
        )
        if not 200 <= exchange.status_code < 300:
            raise proxied.fail(await _refusal(exchange))
        yield "started", None
        async for chunk in proxied.relay(exchange):  # closes the request when the stream ends
            yield "bytes", chunk


async def _refusal(exchange: Exchange) -> ProxyError:
    """Ollama's non-2xx answer as an error (its 4xx too: the chat has no body to pass through)."""
    try:
        error, body = await exchange.refusal()
    except ProxyError as exc:  # the error body itself broke off
        return exc
    status = exchange.status_code
    return error or ProxyError(status, error_message(body) or f"Ollama answered HTTP {status}")


class Answer:
    """The assistant's answer as it accumulates, stored once however the stream ends."""

    def __init__(self, gw: Gateway, conversation_id: int) -> None:
        self.gw = gw
        self.conversation_id = conversation_id
        self.parts: list[str] = []
        self.status = "stopped"  # until the stream says otherwise, the browser left
        self.error: str | None = None
        self.message_id: int | None = None
        self._stored = False

    def feed(self, line: bytes) -> str:
        """Take one NDJSON line of Ollama's stream; return the new text in it."""
        try:
            data = json.loads(line)
        except ValueError:
            return ""
        if not isinstance(data, dict):
            return ""
        if isinstance(data.get("error"), str):
            self.status, self.error = "error", data["error"]
            return ""
        message = data.get("message")
        text = message.get("content") if isinstance(message, dict) else None
        if data.get("done") is True:
            self.status = "complete"
        if isinstance(text, str) and text:
            self.parts.append(text)
            return text
        return ""

    async def store(self) -> None:
        """Write the assistant message (once)."""
        if self._stored:
            return
        self._stored = True
        # Shielded: a browser leaving while this commits must not lose the answer.
        self.message_id = await asyncio.shield(self._write())

    async def _write(self) -> int:
        async with make_async_sessionmaker(self.gw.engine)() as session:
            message = await chat.store_answer(
                session, self.conversation_id, "".join(self.parts), self.status, self.error
            )
            return message.id


def _same_origin(req: Request, public_url: str | None) -> bool:
    """The browser's ``Origin`` is this very site: its ``Host``, or PUBLIC_URL behind a proxy."""
    origin = req.headers.get("Origin")
    if not origin:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https"):
        return False
    public = urlsplit(public_url) if public_url else None
    if public is not None and (parts.scheme, parts.netloc.lower()) == (public.scheme, public.netloc.lower()):
        return True
    return parts.netloc.lower() == req.host.lower()


def _chat_principal(req: Request, gw: Gateway) -> tuple[Principal, str | None]:
    """The chat's principal — its session cookie alone (CSRF-checked) — and the client's address."""
    settings = gw.settings
    session = read_session_cookie(req.cookies.get(SESSION_COOKIE_NAME), settings.secret_key)
    if session is None:
        raise ProxyError(401, "sign in to use the chat")
    token = req.headers.get("X-CSRFToken")
    if not csrf_token_valid(token, session, settings.secret_key, SESSION_LIFETIME_SECONDS):
        raise ProxyError(400, "CSRF check failed: send the page's token in the X-CSRFToken header")
    principal = principal_of(req, settings)
    chat_principal = dataclasses.replace(
        principal,
        credentials=Credentials(),
        client_ip=None,  # a whitelisted address would make it direct_api; the chat is web_chat
        origin=None if _same_origin(req, settings.public_url) else principal.origin,
    )
    return chat_principal, str(principal.client_ip) if principal.client_ip is not None else None


@bp.post("/chat/api/reply")
async def reply() -> Response:
    """Store the user's message and stream the model's answer as NDJSON events."""
    gw = gateway()
    principal, client_ip = _chat_principal(request, gw)
    identity = await gw.identify(principal)
    data = parse_object(await read_body(request, gw.settings.max_body, gw.settings.body_timeout))
    try:
        conversation_id = chat.check_id(data.get("conversation_id"))
        content = chat.check_content(data.get("content"))
        model = chat.check_model(data.get("model"))
        if model is None:
            raise chat.ChatError("model is required")
    except chat.ChatError as exc:
        raise ProxyError(exc.status, exc.message) from None
    if identity.user_id is None:
        raise ProxyError(401, "sign in to use the chat")

    g.source = identity.source.value
    proxied = ProxiedRequest(
        gw, request_id=g.request_id, method="POST", endpoint=CHAT_PATH, client_ip=client_ip
    )
    on_request_end(request.scope, proxied.close)
    # Its close writes the reply's one access-log line (Gateway.finish), so the wrapper writes none.
    request.scope[WRITES_OWN_LINE] = True
    proxied.route_to(resolve("POST", CHAT_PATH))
    # With the principal, a user disabled while the reply waits is refused like any client.
    proxied.admit(identity, principal)
    proxied.client_ip = client_ip  # admit() took the principal's address, left out on purpose
    with proxied.recording_errors():
        # The same policy as any request (docs/contract.md §7): allowed models, rpm, daily tokens;
        # checked before the message is stored, so a refused turn leaves the conversation as it was.
        await gw.policies.admit(proxied, {"model": model})
        try:
            async with make_async_sessionmaker(gw.engine)() as session:
                history = await chat.start_turn(session, conversation_id, identity.user_id, content, model)
        except chat.ChatError as exc:
            raise ProxyError(exc.status, exc.message) from None
    answer = Answer(gw, conversation_id)
    # However the request ends (even a browser gone before the body started), the answer so far
    # is stored; the generation's own closer frees its slot and writes its one request-log row.
    on_request_end(request.scope, answer.store)
    generation = QueuedChat(proxied, {"model": model, "messages": history, "stream": True})
    response = Response(
        _events(generation, answer),
        status=200,
        content_type="application/x-ndjson",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    response.timeout = None  # Quart's RESPONSE_TIMEOUT would cut a long answer silently
    return response


async def _events(generation: QueuedChat, answer: Answer) -> AsyncIterator[bytes]:
    buffer = b""
    try:
        async for kind, value in generation.chunks():
            if kind == "queued":
                position, eta = value  # type: ignore[misc]
                yield event("queued", position=position, eta_s=eta)
            elif kind == "started":
                yield event("started")
            else:
                buffer += value  # type: ignore[operator]
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    text = answer.feed(line)
                    if text:
                        yield event("token", content=text)
        if buffer.strip():
            text = answer.feed(buffer)
            if text:
                yield event("token", content=text)
        if answer.status == "stopped":  # the stream ended without Ollama's done
            answer.status, answer.error = "error", answer.error or "the answer ended early"
    except ProxyError as exc:
        answer.status, answer.error = "error", exc.message
    await generation.proxied.close()  # frees the slot and writes the row before the answer is stored
    await answer.store()
    yield event("done", status=answer.status, error=answer.error, message_id=answer.message_id)
