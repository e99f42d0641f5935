"""Reading request bodies before anything is queued: MAX_BODY, compressed bodies, JSON, multipart.

How a route's body is read is its :class:`~common.routes.Body`:
:func:`read_request_body` reads what goes upstream (``proxy_app.views``, before
the request is served) and :func:`request_fields` finds in it the fields the
gateway decides on (``model``, ``stream``; ``ProxiedRequest.serve``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable

from quart import Request
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from common.door import LONG_BODY
from common.jsondepth import loads_limited
from common.routes import Body
from proxy_app.decompress import BodyTooLarge, UnsupportedEncoding, body_encoding, decompress
from proxy_app.errors import BadRequest, ProxyError
from proxy_app.routes import Route

MODEL_FIELD_LIMIT = 1024  # bytes of a multipart ``model`` field kept

# What goes upstream: a body read whole, one streamed through, or nothing.
Content = bytes | AsyncIterable[bytes] | None


class BodyTimeout(ProxyError):
    """The body did not arrive whole within ``BODY_TIMEOUT`` (408; the connection is closed)."""

    def __init__(self, timeout: float) -> None:
        super().__init__(408, f"request body not received within {timeout:g} s", {"Connection": "close"})


async def read_body(request: Request, limit: int, timeout: float | None = None) -> bytes:
    """The whole body, decompressed if sent with gzip/zstd: 413 past ``limit``, 408 past ``timeout`` s.

    A slow sender holds no slot and no queue place meanwhile (nothing queues
    before the body is whole), and no connection past ``timeout``
    (docs/contract.md §10); Quart's own body timeout covers only ``get_data``.
    """
    encoding = body_encoding(request.headers.get("Content-Encoding"))
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge(limit)
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.body:
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge(limit)
                parts.append(chunk)
    except TimeoutError:
        raise BodyTimeout(timeout or 0.0) from None
    body = b"".join(parts)
    if not encoding:
        return body
    # Off the event loop: up to MAX_BODY of output, produced and checked piece by piece.
    return await asyncio.to_thread(decompress, body, encoding, limit)


async def read_request_body(
    route: Route, request: Request, limit: int, timeout: float | None = None
) -> Content:
    """What goes upstream for ``route``: nothing, the body whole (decompressed), or a blob streamed."""
    if route.body is Body.NONE:
        return None
    if route.body is Body.RAW:
        # Model files are gigabytes: streamed through unread, so never re-encoded.
        if body_encoding(request.headers.get("Content-Encoding")):
            raise UnsupportedEncoding(request.headers["Content-Encoding"])
        # Admitted already (an admin or a whitelisted address): a blob may take longer than BODY_TIMEOUT.
        request.scope[LONG_BODY] = True
        return _raw_stream(request)
    return await read_body(request, limit, timeout)


def request_fields(route: Route, content: Content, headers: Iterable[tuple[str, str]]) -> dict:
    """The fields the gateway decides on: the JSON object, a multipart ``model`` or ``{}`` (400 if bad)."""
    if not isinstance(content, bytes) or route.body in (Body.NONE, Body.RAW):
        return {}
    if route.body is Body.MULTIPART:
        content_type = next((value for name, value in headers if name.lower() == "content-type"), "")
        return {"model": multipart_model(content_type, content)}
    if route.body is Body.OPTIONAL_JSON and not content.strip():
        return {}
    return parse_object(content)


async def _raw_stream(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.body:
        yield chunk


def multipart_model(content_type: str, body: bytes) -> str | None:
    """The ``model`` field of a ``multipart/form-data`` body (400 if the body is not one)."""
    kind, _, params = content_type.partition(";")
    boundary = ""
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.lower() == "boundary":
            boundary = value.strip().strip('"')
    if kind.strip().lower() != "multipart/form-data" or not boundary:
        raise BadRequest("expected a multipart/form-data body with a boundary")
    decoder = MultipartDecoder(boundary.encode(), max_form_memory_size=len(body) + 1)
    decoder.receive_data(body)
    decoder.receive_data(None)
    current: str | None = None
    value = bytearray()
    try:
        while not isinstance(event := decoder.next_event(), NeedData | Epilogue):
            if isinstance(event, Field | File):
                current = event.name if isinstance(event, Field) else None
            elif isinstance(event, Data) and current == "model":
                if len(value) < MODEL_FIELD_LIMIT:
                    value += event.data
                if not event.more_data:
                    return value.decode("utf-8", "replace").strip() or None
    except ValueError as exc:
        raise BadRequest(f"malformed multipart body: {exc}") from None
    return None


def parse_object(body: bytes) -> dict:
    """The body as a JSON object (at most 64 levels deep), or 400."""
    if not body.strip():
        raise BadRequest("missing request body: expected a JSON object")
    try:
        data = loads_limited(body)  # JSONTooDeep is a ValueError: 400 too
    except ValueError as exc:
        raise BadRequest(f"malformed JSON body: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    return data


def model_of(payload: dict) -> str | None:
    """The model a request names (``model``, or ``name`` in older Ollama clients)."""
    for field in ("model", "name"):
        value = payload.get(field)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None
