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
from proxy_app.ollama_fields import case_variant
from proxy_app.routes import Route

MODEL_FIELD_LIMIT = 1024  # bytes of a multipart ``model`` part; a longer one is 400 (no model name is)

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
    fields = parse_object(content)
    variant = case_variant(route.name, list(fields))
    if variant is not None:
        # Ollama's Go decoder would take it for a field the gateway reads by its exact name (§16).
        key, field = variant
        raise BadRequest(f"field '{key}' must be spelled '{field}' (field names are case-sensitive)")
    return fields


async def _raw_stream(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.body:
        yield chunk


def multipart_model(content_type: str, body: bytes) -> str:
    """The one part named ``model`` of a ``multipart/form-data`` body, file or not (400 otherwise).

    Go's ``FormValue("model")`` in Ollama reads a part sent with ``filename=""``
    as a value, so every part so named counts; two, or none, are refused
    (docs/contract.md §16). The body's delimiters must be the plain ones
    (``CRLF--boundary`` then CRLF or ``--``) and the boundary may occur nowhere
    else, so Go's parser and this one split the body into the same parts.
    """
    boundary = _boundary(content_type).encode("latin-1", "replace")
    decoder = MultipartDecoder(boundary, max_form_memory_size=len(body) + 1)
    decoder.receive_data(body)
    decoder.receive_data(None)
    current: str | None = None
    parts = 0
    values: list[bytearray] = []
    try:
        while not isinstance(event := decoder.next_event(), NeedData | Epilogue):
            if isinstance(event, Field | File):
                parts += 1
                if len(event.headers.getlist("Content-Disposition")) != 1:
                    raise BadRequest("a multipart part must have exactly one Content-Disposition header")
                current = event.name
                if current == "model":
                    values.append(bytearray())
            elif isinstance(event, Data) and current == "model":
                if len(values[-1]) + len(event.data) > MODEL_FIELD_LIMIT:
                    raise BadRequest(f"the multipart 'model' field is over {MODEL_FIELD_LIMIT} bytes")
                values[-1] += event.data
    except ValueError as exc:
        raise BadRequest(f"malformed multipart body: {exc}") from None
    if not isinstance(event, Epilogue) or not _plain_delimiters(body, b"--" + boundary, parts):
        raise BadRequest("malformed multipart body: its parts are not delimited plainly by its boundary")
    if len(values) != 1:
        count = "several" if values else "none"
        raise BadRequest(f"the multipart body must have exactly one 'model' part, not {count}")
    model = values[0].decode("utf-8", "replace")
    if not model:
        raise BadRequest("the multipart 'model' part is empty")
    return model


def _boundary(content_type: str) -> str:
    kind, _, params = content_type.partition(";")
    boundary = ""
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.lower() == "boundary":
            boundary = value.strip().strip('"')
    if kind.strip().lower() != "multipart/form-data" or not boundary:
        raise BadRequest("expected a multipart/form-data body with a boundary")
    return boundary


def _plain_delimiters(body: bytes, delimiter: bytes, parts: int) -> bool:
    """Whether ``delimiter`` occurs only as the ``parts + 1`` plain delimiter lines of the body."""
    at = body.find(delimiter)
    seen = 0
    while at != -1:
        seen += 1
        # The first may follow a preamble's line; the rest end the part before them with CRLF.
        before_ok = (at == 0 or body[at - 1 : at] == b"\n") if seen == 1 else body[at - 2 : at] == b"\r\n"
        after = body[at + len(delimiter) : at + len(delimiter) + 2]
        if not before_ok or after not in (b"\r\n", b"--") or (after == b"--") != (seen == parts + 1):
            return False
        at = body.find(delimiter, at + len(delimiter))
    return seen == parts + 1


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
