"""The web chat's answers (docs/contract.md §9, §14): one queued ``/api/chat`` generation per reply.

``POST /chat/api/reply`` with ``{"conversation_id", "content", "model", "turn"?}`` (``turn``:
``send``, the default; ``regenerate`` the last answer; ``edit`` the last question, replaced by
``content``) stores the turn and an empty ``streaming`` answer, starts the generation as a task of
the gateway (:mod:`proxy_app.chat_runs`: classification from the session cookie alone, so the
source is always ``web_chat``; the user's queue place, slot and one request-log row) and streams
NDJSON events to the browser while it follows:

    {"type": "queued", "position": 2, "eta_s": null}   while waiting (eta_s null when unknown)
    {"type": "started"}                                 a slot is granted, Ollama answers
    {"type": "token", "content": "Hel"}                 the answer as it comes
    {"type": "done", "status": "complete"|"stopped"|"error", "error": null, "message_id": 7}

The browser leaving (another conversation, a reload, a closed tab) ends only its following: the
answer completes and is stored. ``GET /chat/api/reply/{conversation_id}`` follows it again (what
was said so far as one ``token`` event, then the live tail; 204 when nothing is being written
here). ``POST /chat/api/reply/stop`` ``{"conversation_id"}`` stops it: the request leaves the
queue or its upstream closes, and the part said so far is stored as ``stopped``. Prompts and
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
from proxy_app.chat_runs import ReplyRun
from proxy_app.classify import Principal, principal_of
from proxy_app.errors import ProxyError
from proxy_app.gateway import Gateway, gateway
from proxy_app.headers import forward_headers
from proxy_app.proxied import ProxiedRequest
from proxy_app.routes import resolve
from proxy_app.upstream import Exchange, error_message

bp = Blueprint("chat_stream", __name__)

POSITION_POLL = 0.25  # seconds between queue-position checks while waiting
CHAT_PATH = "/api/chat"


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
    """The assistant's answer as it accumulates, stored once however the generation ends."""

    def __init__(self, gw: Gateway, message_id: int) -> None:
        self.gw = gw
        self.message_id = message_id
        self.parts: list[str] = []
        self.status = "stopped"  # until the stream says otherwise, it was stopped
        self.error: str | None = None
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
        """Fill the answer's row (once)."""
        if self._stored:
            return
        self._stored = True
        async with make_async_sessionmaker(self.gw.engine)() as session:
            await chat.store_answer(session, self.message_id, "".join(self.parts), self.status, self.error)


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


def _reply_fields(data: dict) -> tuple[int, str | None, str, str]:
    """``conversation_id``, ``content`` (none to regenerate), ``model`` and ``turn``, checked."""
    try:
        conversation_id = chat.check_id(data.get("conversation_id"))
        turn = data.get("turn", "send")
        if turn not in chat.TURNS:
            raise chat.ChatError(f"turn must be one of {', '.join(chat.TURNS)}")
        content = None if turn == "regenerate" else chat.check_content(data.get("content"))
        model = chat.check_model(data.get("model"))
        if model is None:
            raise chat.ChatError("model is required")
    except chat.ChatError as exc:
        raise ProxyError(exc.status, exc.message) from None
    return conversation_id, content, model, turn


def _following(run: ReplyRun) -> Response:
    response = Response(
        run.follow(),
        status=200,
        content_type="application/x-ndjson",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    response.timeout = None  # Quart's RESPONSE_TIMEOUT would cut a long answer silently
    return response


@bp.post("/chat/api/reply")
async def reply() -> Response:
    """Store the turn, start the answer in the gateway, and follow it as NDJSON events."""
    gw = gateway()
    principal, client_ip = _chat_principal(request, gw)
    identity = await gw.identify(principal)
    data = parse_object(await read_body(request, gw.settings.max_body, gw.settings.body_timeout))
    conversation_id, content, model, turn = _reply_fields(data)
    if identity.user_id is None:
        raise ProxyError(401, "sign in to use the chat")

    g.source = identity.source.value
    proxied = ProxiedRequest(
        gw, request_id=g.request_id, method="POST", endpoint=CHAT_PATH, client_ip=client_ip
    )
    # Its close (when refused, or when the gateway's run ends) writes the reply's one access-log
    # line (Gateway.finish), so the wrapper around the app writes none.
    request.scope[WRITES_OWN_LINE] = True
    proxied.route_to(resolve("POST", CHAT_PATH))
    try:
        # With the principal, a user disabled while the reply waits is refused like any client.
        proxied.admit(identity, principal)
        proxied.client_ip = client_ip  # admit() took the principal's address, left out on purpose
        with proxied.recording_errors():
            # The same policy as any request (docs/contract.md §7): allowed models, rpm, daily tokens;
            # checked before anything is stored, so a refused turn leaves the conversation as it was.
            await gw.policies.admit(proxied, {"model": model})
            try:
                async with make_async_sessionmaker(gw.engine)() as session:
                    history, message_id = await chat.start_turn(
                        session, conversation_id, identity.user_id, content, model, turn
                    )
            except chat.ChatError as exc:
                raise ProxyError(exc.status, exc.message) from None
    except BaseException:
        await proxied.close()  # refused before it started: its one request-log row
        raise
    generation = QueuedChat(proxied, {"model": model, "messages": history, "stream": True})
    run = ReplyRun(conversation_id, identity.user_id, message_id, generation, Answer(gw, message_id))
    gw.replies.add(run)  # from here on the answer is the gateway's, not this request's
    return _following(run)


async def _chat_user(gw: Gateway) -> int:
    principal, _ = _chat_principal(request, gw)
    user = await gw.identify(principal)
    if user.user_id is None:
        raise ProxyError(401, "sign in to use the chat")
    return user.user_id


@bp.get("/chat/api/reply/<conversation_id>")
async def follow(conversation_id: str) -> Response:
    """Follow the answer being written in the user's conversation; 204 when none is (here)."""
    gw = gateway()
    user_id = await _chat_user(gw)
    if not conversation_id.isdigit() or len(conversation_id) > 18:
        raise ProxyError(404, "conversation not found")
    run = gw.replies.get(int(conversation_id), user_id)
    if run is None:
        return Response(b"", status=204)
    return _following(run)


@bp.post("/chat/api/reply/stop")
async def stop() -> Response:
    """Stop the answer being written in the user's conversation; the part said so far is kept."""
    gw = gateway()
    user_id = await _chat_user(gw)
    data = parse_object(await read_body(request, gw.settings.max_body, gw.settings.body_timeout))
    try:
        conversation_id = chat.check_id(data.get("conversation_id"))
    except chat.ChatError as exc:
        raise ProxyError(exc.status, exc.message) from None
    run = gw.replies.get(conversation_id, user_id)
    if run is None:
        raise ProxyError(404, "no answer is being written in this conversation")
    await run.stop()
    return Response(
        json.dumps({"status": run.answer.status, "message_id": run.message_id}),
        status=200,
        content_type="application/json",
    )
