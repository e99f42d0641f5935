"""Each protocol's own shapes: queue comments, in-band errors and refusals (docs/contract.md §3, §5).

A :class:`StreamDialect` belongs to a route and knows how its protocol says
"still waiting" and "this failed". An error after the first byte must be an
event the client's SDK reads as an error — never a fake end (``done``,
``[DONE]``, ``message_stop``, ``response.completed``):

- Ollama NDJSON: a last line ``{"error": "..."}``.
- OpenAI chat/completions SSE: ``data: {"error": {"message": "..."}}``.
- Anthropic Messages SSE: ``event: error`` with ``{"type": "error", "error":
  {"type": "overloaded_error"|"api_error"|..., "message": "..."}}`` (the
  Anthropic SDK raises on it).
- OpenAI Responses SSE: ``event: error`` (OpenAI's ``ResponseErrorEvent``)
  then ``event: response.failed`` with the error in ``response.error`` — the
  terminal event Ollama's ``middleware/openai.go`` and Codex use.

Refusals (a status other than 200, before the stream) are ``{"error": "..."}``
everywhere but ``/v1/messages``, where Anthropic's SDK only shows the message
of its own shape.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from common.routes import Wire, wire_of

UsageKind = Literal["ollama", "openai", "anthropic", "responses"]

# Anthropic's error types by HTTP status (docs.anthropic.com "Errors"; ollama anthropic.NewError).
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}
# OpenAI Responses error codes by HTTP status (ollama middleware/openai.go writeWebSearchError).
_RESPONSES_CODES = {401: "authentication_error", 429: "rate_limit_exceeded"}


def anthropic_error_type(status: int) -> str:
    """Anthropic's ``error.type`` for an HTTP status (5xx not listed: ``api_error``)."""
    if status in _ANTHROPIC_TYPES:
        return _ANTHROPIC_TYPES[status]
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def _anthropic_error(status: int, message: str) -> dict:
    return {"type": "error", "error": {"type": anthropic_error_type(status), "message": message}}


def _lead(tail: bytes, separator: bytes) -> bytes:
    # What completes the last line/event already sent so the error starts cleanly.
    if not tail or tail.endswith(separator):
        return b""
    if separator == b"\n\n" and tail.endswith(b"\n"):
        return b"\n"
    return separator


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


@dataclass(frozen=True)
class StreamDialect:
    """How one protocol frames its stream, its in-band errors and its refusals."""

    name: Wire
    sse: bool
    usage_kind: UsageKind

    def queue_comment(self, position: int, eta: int | None = None) -> bytes:
        """``: queued position=N [eta=S]`` for SSE (a comment every SSE client skips); nothing for NDJSON."""
        if not self.sse:
            return b""
        suffix = f" eta={eta}" if eta is not None else ""
        return f": queued position={position}{suffix}\n\n".encode()

    def inband_error(self, message: str, *, tail: bytes = b"", status: int = 502) -> bytes:
        """The last line/event of a stream that failed after its first byte."""
        if not self.sse:
            return _lead(tail, b"\n") + _json({"error": message}) + b"\n"
        lead = _lead(tail, b"\n\n")
        if self.name is Wire.ANTHROPIC:
            return lead + b"event: error\ndata: " + _json(_anthropic_error(status, message)) + b"\n\n"
        if self.name is Wire.RESPONSES:
            code = _RESPONSES_CODES.get(status, "server_error")
            error = {"type": "error", "code": code, "message": message, "param": None}
            failed = {
                "type": "response.failed",
                "response": {
                    "object": "response",
                    "status": "failed",
                    "error": {"code": code, "message": message},
                    "output": [],
                },
            }
            return (
                lead
                + b"event: error\ndata: "
                + _json(error)
                + b"\n\nevent: response.failed\ndata: "
                + _json(failed)
                + b"\n\n"
            )
        return lead + b"data: " + _json({"error": {"message": message}}) + b"\n\n"

    def refusal_body(self, status: int, message: str) -> bytes:
        """The JSON body of a refusal (a non-2xx answer of the gateway's own)."""
        if self.name is Wire.ANTHROPIC:
            return _json(_anthropic_error(status, message))
        return _json({"error": message})


NDJSON = StreamDialect(Wire.OLLAMA, sse=False, usage_kind="ollama")
OPENAI_SSE = StreamDialect(Wire.OPENAI, sse=True, usage_kind="openai")
ANTHROPIC = StreamDialect(Wire.ANTHROPIC, sse=True, usage_kind="anthropic")
RESPONSES = StreamDialect(Wire.RESPONSES, sse=True, usage_kind="responses")

_BY_WIRE = {dialect.name: dialect for dialect in (NDJSON, OPENAI_SSE, ANTHROPIC, RESPONSES)}


def dialect_for(path: str) -> StreamDialect:
    """The dialect of a request path (its protocol: :func:`common.routes.wire_of`)."""
    return _BY_WIRE[wire_of(path)]
