"""One request and its response on the raw ASGI interface, with disconnect tracking and faults."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from simulator.faults import NO_FAULT, Fault
from simulator.state import SimState

JSON_TYPE = "application/json; charset=utf-8"
NDJSON_TYPE = "application/x-ndjson"
SSE_TYPE = "text/event-stream"
OPENAI_ERROR_TYPES = {400: "invalid_request_error", 404: "not_found_error"}
# NewError in anthropic/anthropic.go
ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


class Stop(Exception):
    """The exchange ended early; ``outcome`` is what the record says."""

    outcome = "error"


class ClientGone(Stop):
    """The client closed the connection before the response was complete."""

    outcome = "cancelled"


class Dropped(Stop):
    """The simulator closed the connection on purpose (a drop fault)."""

    outcome = "dropped"


class Failed(Stop):
    """The response already ended with an in-band error."""


class HTTPError(Exception):
    """Answer with an error status and body (only possible before the response has started)."""

    def __init__(self, status: int, message: str, outcome: str = "error") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.outcome = outcome


GO_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def go_json(obj: Any) -> str:
    """Compact JSON as Go's ``json.Marshal`` writes it (``<``, ``>``, ``&`` escaped as ``\\u003c``...)."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    # Those characters only ever occur inside JSON strings, so escaping the whole text is safe.
    return text.translate(GO_ESCAPES) if any(c in text for c in "<>&\u2028\u2029") else text


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes, as Go's encoder writes them."""
    return go_json(obj).encode()


def openai_error(status: int, message: str) -> dict[str, Any]:
    """An OpenAI-style error object, with the type Ollama's compatibility layer picks."""
    kind = OPENAI_ERROR_TYPES.get(status, "api_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    """An Anthropic-style error object, as Ollama's /v1/messages writes it (with a ``req_`` id)."""
    kind = ANTHROPIC_ERROR_TYPES.get(status, "api_error")
    return {
        "type": "error",
        "error": {"type": kind, "message": message},
        "request_id": f"req_{os.urandom(12).hex()}",
    }


class Exchange:
    """A request being answered; every send checks whether the client is still there."""

    def __init__(self, state: SimState, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.state = state
        self.config = state.config  # one request sees one configuration, even if it changes meanwhile
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.openai = self.path.startswith("/v1/")
        self.anthropic = self.path == "/v1/messages"
        self.headers: dict[str, str] = {}
        for raw_name, raw_value in scope.get("headers", ()):
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            self.headers[name] = f"{self.headers[name]}, {value}" if name in self.headers else value
        self.entry: dict[str, Any] = {}
        self.fault: Fault = NO_FAULT
        self.body = b""
        self.payload: Any = None  # the parsed JSON body, None when absent or invalid
        self.payload_error: str | None = None
        self.gone = False
        self.started = False
        self.chunks = 0
        self.load_ns = 0  # nanoseconds spent getting the model's runner: Ollama's load_duration
        self._receive = receive
        self._send = send
        self._watcher: asyncio.Task[None] | None = None
        self._mid_fired = False

    # -- receiving ------------------------------------------------------------------------

    async def read_body(self) -> bytes:
        """The whole request body."""
        parts: list[bytes] = []
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.gone = True
                raise ClientGone
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(parts)

    def watch(self) -> None:
        """Start noticing a disconnect (call after the body has been read)."""
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self.gone = True

    def close(self) -> None:
        """Stop watching for a disconnect."""
        if self._watcher is not None and not self._watcher.done():
            self._watcher.cancel()

    async def pause(self, seconds: float) -> None:
        """Sleep, but wake up (and raise :class:`ClientGone`) as soon as the client leaves."""
        if seconds > 0:
            # Token gaps sleep plainly (cheap with 1,000 streams; a disconnect is seen a gap later);
            # long waits wake the moment the client leaves.
            if self._watcher is None or seconds < 0.25:
                await asyncio.sleep(seconds)
            else:
                await asyncio.wait((self._watcher,), timeout=seconds)
        if self.gone:
            raise ClientGone

    async def wait(self, future: asyncio.Future[Any]) -> None:
        """Wait for ``future`` unless the client leaves first."""
        if self._watcher is None:
            await future
        else:
            await asyncio.wait((future, self._watcher), return_when=asyncio.FIRST_COMPLETED)
        if self.gone:
            raise ClientGone

    # -- sending --------------------------------------------------------------------------

    async def start(
        self, status: int, content_type: str, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        """Send the status line and headers."""
        if self.gone:
            raise ClientGone
        all_headers = [(b"content-type", content_type.encode()), *(headers or ())]
        await self._send({"type": "http.response.start", "status": status, "headers": all_headers})
        self.started = True
        self.entry["status"] = status
        self.entry["first_byte"] = time.time()

    async def chunk(self, data: bytes) -> None:
        """Send one piece of a streamed body."""
        if self.gone:
            raise ClientGone
        await self._send({"type": "http.response.body", "body": data, "more_body": True})
        self.chunks += 1
        self.entry["chunks"] = self.chunks

    async def finish(self, data: bytes = b"") -> None:
        """Send the last piece of the body."""
        if self.gone:
            raise ClientGone
        await self._send({"type": "http.response.body", "body": data, "more_body": False})
        if data:
            self.chunks += 1
            self.entry["chunks"] = self.chunks

    async def respond(self, status: int, body: bytes, content_type: str = JSON_TYPE) -> None:
        """Send a whole response."""
        await self.start(status, content_type, [(b"content-length", str(len(body)).encode())])
        await self.finish(body)

    async def json(self, obj: Any, status: int = 200) -> None:
        """Send one JSON object."""
        await self.respond(status, dumps(obj))

    async def error(self, status: int, message: str) -> None:
        """Send an error in this path's dialect: Ollama's ``{"error"}``, Anthropic's or OpenAI's on /v1."""
        if self.anthropic:
            await self.json(anthropic_error(status, message), status)
        else:
            await self.json(openai_error(status, message) if self.openai else {"error": message}, status)

    def error_line(self, message: str) -> bytes:
        """An in-band error ending a stream: an NDJSON line, or an SSE event on /v1."""
        if self.anthropic:
            error = {"type": "error", "error": {"type": "api_error", "message": message}}
            return b"event: error\ndata: " + dumps(error) + b"\n\n"
        if self.openai:
            return b"data: " + dumps(openai_error(500, message)) + b"\n\n"
        return dumps({"error": message}) + b"\n"

    async def drop(self) -> None:
        """Close the connection abruptly, without finishing the response."""
        self.watch()
        # uvicorn's send is a bound method of the request cycle, which owns the transport.
        transport = getattr(getattr(self._send, "__self__", None), "transport", None)
        if transport is not None:
            transport.close()
            # Let the server see the close first, so it does not log an unfinished response.
            await asyncio.wait((self._watcher,), timeout=1.0)  # type: ignore[arg-type]
        # A server that hides its transport closes the connection when we return unfinished.
        raise Dropped

    # -- faults ---------------------------------------------------------------------------

    async def header_faults(self) -> None:
        """Faults that strike before anything is sent: stall, drop, status."""
        fault = self.fault
        if fault.stall_headers:
            self.watch()
            await self.pause(fault.stall_headers)
        if fault.drop_headers:
            await self.drop()
        if fault.status:
            raise HTTPError(fault.status, fault.status_message(), "fault")

    async def mid_fault(self) -> None:
        """Faults that strike in the middle of a body (once): stall, drop, in-band error."""
        fault = self.fault
        if self._mid_fired or not fault.any_mid:
            return
        self._mid_fired = True
        if fault.stall_mid:
            await self.pause(fault.stall_mid)
        if fault.drop_mid:
            if not self.started:
                await self.start(200, SSE_TYPE if self.openai else JSON_TYPE)
            await self.drop()
        if fault.error_mid:
            message = fault.message or "an error was encountered while running the model: simulated failure"
            if not self.started:
                raise HTTPError(500, message, "fault")
            await self.finish(self.error_line(message))
            raise Failed

    def header_number(self, name: str, default: float, *, integer: bool = False) -> float:
        """A per-request override such as ``X-Sim-Tokens`` (400 when it is not a number >= 0)."""
        raw = self.headers.get(name)
        if raw is None or not raw.strip():
            return default
        try:
            value = int(raw) if integer else float(raw)
        except ValueError:
            raise HTTPError(400, f"{name} must be a number, got {raw!r}") from None
        if value < 0:
            raise HTTPError(400, f"{name} must not be negative, got {raw!r}")
        return value
