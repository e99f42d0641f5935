"""Reading request bodies: the MAX_BODY limit and strict JSON, before anything is queued."""

from __future__ import annotations

from quart import Request

from common.jsondepth import loads_limited
from proxy_app.errors import BadRequest, ProxyError


class BodyTooLarge(ProxyError):
    """The body is over ``MAX_BODY`` (413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body too large (limit {limit} bytes)")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing with 413 as soon as it passes ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge(limit)
    parts: list[bytes] = []
    size = 0
    async for chunk in request.body:
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        parts.append(chunk)
    return b"".join(parts)


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
