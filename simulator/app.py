"""The simulator as a plain ASGI application: routing, request records, faults and /_sim control."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from simulator import account, anthropic, models, native, openai_compat, responses, transcription
from simulator.compression import BodyError, decode_body
from simulator.config import ConfigError, SimulatorConfig
from simulator.exchange import Exchange, HTTPError, Stop
from simulator.faults import FaultError, parse_fault, split_model_fault
from simulator.state import BODY_RECORD_LIMIT, SimState

logger = logging.getLogger("simulator")

Handler = Callable[[Exchange], Awaitable[None]]

ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", "/"): models.root,
    ("POST", "/api/chat"): native.chat,
    ("POST", "/api/generate"): native.generate,
    ("POST", "/api/embed"): native.embed,
    ("POST", "/api/embeddings"): native.embeddings,
    ("GET", "/api/tags"): models.tags,
    ("POST", "/api/show"): models.show,
    ("GET", "/api/ps"): models.ps,
    ("GET", "/api/version"): models.version,
    ("POST", "/api/pull"): models.pull,
    ("POST", "/api/push"): models.push,
    ("POST", "/api/create"): models.create,
    ("POST", "/api/copy"): models.copy,
    ("DELETE", "/api/delete"): models.delete,
    ("POST", "/v1/chat/completions"): openai_compat.chat_completions,
    ("POST", "/v1/completions"): openai_compat.completions,
    ("POST", "/v1/embeddings"): openai_compat.embeddings,
    ("GET", "/v1/models"): openai_compat.models,
    ("POST", "/v1/responses"): responses.create,
    ("POST", "/v1/messages"): anthropic.messages,
    ("POST", "/v1/audio/transcriptions"): transcription.transcribe,
    ("GET", "/api/status"): account.status,
    ("GET", "/api/experimental/model-recommendations"): account.recommendations,
    ("POST", "/api/me"): account.whoami,
    ("POST", "/api/signout"): account.signout,
    ("POST", "/api/experimental/web_search"): account.web_experimental,
    ("POST", "/api/experimental/web_fetch"): account.web_experimental,
}
PREFIX_ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/v1/models/", openai_compat.model),
    ("HEAD", "/api/blobs/", models.blobs),
    ("POST", "/api/blobs/", models.blobs),
    ("DELETE", "/api/user/keys/", account.signout),
]


def resolve(method: str, path: str) -> Handler | None:
    """The handler for a request, or None (404); HEAD is served like GET."""
    handler = ROUTES.get((method, path)) or (ROUTES.get(("GET", path)) if method == "HEAD" else None)
    if handler is None:
        for route_method, prefix, candidate in PREFIX_ROUTES:
            if path.startswith(prefix) and len(path) > len(prefix) and method == route_method:
                return candidate
    return handler


class Simulator:
    """A fake Ollama server: ``Simulator(config)`` is an ASGI app; ``.state`` is what tests inspect."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.state = SimState(config or SimulatorConfig())

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            if scope["path"].startswith("/_sim/"):
                await self._control(Exchange(self.state, scope, receive, send))
            else:
                await self._serve(Exchange(self.state, scope, receive, send))
        elif scope["type"] == "lifespan":
            await _lifespan(receive, send)

    async def _serve(self, ex: Exchange) -> None:
        ex.entry = self.state.begin(ex.method, ex.path, ex.headers)
        outcome = "completed"
        try:
            ex.body = await ex.read_body()
            try:
                ex.body = decode_body(ex.method, ex.path, ex.headers.get("content-encoding"), ex.body)
            except BodyError as exc:
                # cloudPassthroughMiddleware answers in Ollama's own shape, even on /v1.
                ex.entry["body_size"] = len(ex.body)
                await ex.json({"error": str(exc)}, 400)
                outcome = "error"
                return
            _prepare(ex)
            await ex.header_faults()
            handler = resolve(ex.method, ex.path)
            if handler is None:
                await ex.respond(404, b"404 page not found", "text/plain")
            else:
                await handler(ex)
            if (ex.entry["status"] or 500) >= 400:
                outcome = "error"
        except Stop as stop:
            outcome = stop.outcome
        except HTTPError as exc:
            outcome = await _answer_error(ex, exc.status, exc.message, exc.outcome)
        except asyncio.CancelledError:
            outcome = "cancelled"  # the server is shutting down under us
            raise
        except Exception:
            logger.exception("simulator failed on %s %s", ex.method, ex.path)
            outcome = await _answer_error(ex, 500, "internal simulator error", "error")
        finally:
            ex.close()
            self.state.end(ex.entry, outcome)

    async def _control(self, ex: Exchange) -> None:
        """/_sim/stats, /_sim/reset, /_sim/config: for tests; never recorded, never faulted."""
        state = self.state
        try:
            ex.body = await ex.read_body()
            if ex.path == "/_sim/stats" and ex.method == "GET":
                await ex.json(state.snapshot())
            elif ex.path == "/_sim/reset" and ex.method == "POST":
                state.reset()
                await ex.json({"status": "ok"})
            elif ex.path == "/_sim/config" and ex.method == "GET":
                await ex.json(state.config.as_dict())
            elif ex.path == "/_sim/config" and ex.method in ("POST", "PATCH"):
                try:
                    changes = json.loads(ex.body or b"{}")
                    if not isinstance(changes, dict):
                        raise ConfigError("expected a JSON object of settings")
                    await ex.json(state.configure(changes).as_dict())
                except (ConfigError, ValueError) as exc:
                    await ex.error(400, str(exc))
            else:
                await ex.error(404, "no such simulator control endpoint")
        except Stop:
            pass


def _prepare(ex: Exchange) -> None:
    """Parse the body, find the fault to apply and fill in the record."""
    entry = ex.entry
    entry["body_size"] = len(ex.body)
    model_spec: str | None = None
    if ex.body:
        try:
            ex.payload = json.loads(ex.body)
        except ValueError as exc:
            ex.payload_error = f"invalid JSON body: {exc}"
    payload = ex.payload
    if isinstance(payload, dict):
        model = payload.get("model")
        split = split_model_fault(model) if isinstance(model, str) else None
        if split is not None:
            model_spec, name = split
            payload["model"] = name or (ex.config.models[0] if ex.config.models else "")
        entry["model"] = payload.get("model") if isinstance(payload.get("model"), str) else None
        entry["stream"] = payload.get("stream")
    if len(ex.body) <= BODY_RECORD_LIMIT:
        entry["body"] = payload
    spec = ex.headers.get("x-sim-fault") or model_spec or ex.config.fault
    try:
        ex.fault = parse_fault(spec)
    except FaultError as exc:
        raise HTTPError(400, f"bad fault spec {spec!r}: {exc}") from None
    entry["fault"] = spec or None


async def _answer_error(ex: Exchange, status: int, message: str, outcome: str) -> str:
    """Send an error if nothing has been sent yet; the record's outcome for it."""
    if ex.started:
        return outcome
    try:
        await ex.error(status, message)
    except Stop as stop:
        return stop.outcome
    return outcome


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_app(config: SimulatorConfig | None = None) -> Simulator:
    """A new simulator application with its own state."""
    return Simulator(config)
