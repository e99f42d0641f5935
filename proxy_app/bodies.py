"""Reading request bodies: the MAX_BODY limit and strict JSON, before anything is queued."""

from __future__ import annotations

import asyncio
import json

from quart import Request

from proxy_app.errors import BadRequest, ProxyError


class BodyTooLarge(ProxyError):
    """The body is over ``MAX_BODY`` (413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body too large (limit {limit} bytes)")


class BodyTimeout(ProxyError):
    """The body did not arrive whole within ``BODY_TIMEOUT`` (408; the connection is closed)."""

    def __init__(self, timeout: float) -> None:
        super().__init__(408, f"request body not received within {timeout:g} s", {"Connection": "close"})


async def read_body(request: Request, limit: int, timeout: float | None = None) -> bytes:
    """The whole body: 413 as soon as it passes ``limit`` bytes, 408 if it takes over ``timeout`` s.

    A slow sender holds no slot and no queue place meanwhile (nothing queues
    before the body is whole), and no connection past ``timeout``
    (docs/contract.md §10); Quart's own body timeout covers only ``get_data``.
    """
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
    return b"".join(parts)


def parse_object(body: bytes) -> dict:
    """The body as a JSON object, or 400."""
    if not body.strip():
        raise BadRequest("missing request body: expected a JSON object")
    try:
        data = json.loads(body)
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
