"""One error type for the gateway, answered as Ollama's JSON ``{"error": message}``."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from quart import Quart, Response, request
from werkzeug.exceptions import HTTPException

from common.sources import ClassificationError
from proxy_app.dialects import refusal_response

log = logging.getLogger("seadragon.gateway")

# How long a client is told to wait before retrying a 503 when nobody said better.
DEFAULT_RETRY_AFTER = 5


class ProxyError(Exception):
    """A refusal or failure with its HTTP status; the message is safe to show."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


class BadRequest(ProxyError):
    """The request itself is wrong (400)."""

    def __init__(self, message: str) -> None:
        super().__init__(400, message)


class NotFound(ProxyError):
    """No such endpoint here; nothing is forwarded (404)."""

    def __init__(self, message: str = "not found") -> None:
        super().__init__(404, message)


class Forbidden(ProxyError):
    """Known identity, not allowed to do this (403)."""

    def __init__(self, message: str) -> None:
        super().__init__(403, message)


class Unavailable(ProxyError):
    """Try again later (503 with ``Retry-After``)."""

    def __init__(self, message: str, retry_after: int | None = DEFAULT_RETRY_AFTER) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        super().__init__(503, message, headers)


class BadGateway(ProxyError):
    """Ollama refused, broke or failed (502)."""

    def __init__(self, message: str) -> None:
        super().__init__(502, message)


class GatewayTimeout(ProxyError):
    """Ollama did not answer in time (504)."""

    def __init__(self, message: str) -> None:
        super().__init__(504, message)


def json_error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON error response in Ollama's shape."""
    response = Response(json.dumps({"error": message}), status=status, content_type="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def from_classification(error: ClassificationError) -> ProxyError:
    """The classifier's refusal as a gateway error."""
    return ProxyError(error.status, error.message)


def register_error_handlers(app: Quart) -> None:
    """Every error becomes JSON, Quart's own 404/405/413 included; never a traceback."""

    @app.errorhandler(ProxyError)
    async def proxy_error(error: ProxyError) -> Response:
        return refusal_response(request.path, error.status, error.message, error.headers)

    @app.errorhandler(ClassificationError)
    async def classification_error(error: ClassificationError) -> Response:
        return refusal_response(request.path, error.status, error.message)

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        response = refusal_response(request.path, error.code or 500, _http_message(error))
        # Keep what the exception says about itself, e.g. Allow on a 405.
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    async def unexpected_error(error: Exception) -> Response:
        log.exception("unhandled error", exc_info=error)
        return refusal_response(request.path, 500, "internal server error")


def _http_message(error: HTTPException) -> str:
    messages = {
        404: "not found",
        405: "method not allowed",
        413: "request body too large",
    }
    return messages.get(error.code or 500, (error.name or "error").lower())
