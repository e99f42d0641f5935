"""The gateway's errors, answered as Ollama's JSON ``{"error": message}`` (Anthropic's shape on /v1/messages).

The exception tree (everything the gateway answers with on purpose)::

    ProxyError(status, message, headers)       the one error type the gateway answers with
    ├── BadRequest              400  the request itself is wrong (body, headers)
    ├── Forbidden               403  known identity, not allowed to do this
    ├── NotFound                404  not a route of the table (docs/contract.md §3); nothing forwarded
    ├── MethodNotAllowed        405  the path exists, the method does not (with ``Allow``)
    ├── Unavailable             503  try again later (with ``Retry-After``)
    ├── BadGateway              502  Ollama refused, broke or failed
    └── GatewayTimeout          504  Ollama sent nothing in time

Raised elsewhere and mapped here by :func:`as_proxy_error` (the one place an
error becomes a status):

* ``common.sources.ClassificationError`` (400/401/403: who is calling) — from
  the framework-free classifier, which cannot import this module;
* ``proxy_app.scheduler.SchedulerError`` and its ``QueueFull``, ``QueueTimeout``,
  ``NoBackend`` (503 with ``Retry-After``) and ``Revoked`` (401);
* werkzeug's ``HTTPException`` (Quart's own 404/405/413), by the app's handler.

Anything else is a bug: logged, answered 500 without a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from quart import Quart, Response, request
from werkzeug.exceptions import HTTPException

from common.sources import ClassificationError
from proxy_app.dialects import dialect_for
from proxy_app.scheduler import SchedulerError

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


class MethodNotAllowed(ProxyError):
    """The path exists, the method does not (405 with ``Allow``)."""

    def __init__(self, allowed: tuple[str, ...]) -> None:
        super().__init__(405, "method not allowed", {"Allow": ", ".join(allowed)})


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


def json_error(
    status: int, message: str, headers: Mapping[str, str] | None = None, *, path: str = ""
) -> Response:
    """A JSON refusal in the shape the client of ``path`` reads (docs/contract.md §3; Ollama's by default)."""
    body = dialect_for(path).refusal_body(status, message)
    response = Response(body, status=status, content_type="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def as_proxy_error(error: ProxyError | ClassificationError | SchedulerError) -> ProxyError:
    """Any refusal the gateway knows, as the :class:`ProxyError` it is answered with."""
    if isinstance(error, ProxyError):
        return error
    if isinstance(error, SchedulerError):
        headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else {}
        return ProxyError(error.status, error.message, headers)
    return ProxyError(error.status, error.message)


KNOWN_ERRORS = (ProxyError, ClassificationError, SchedulerError)


def register_error_handlers(app: Quart) -> None:
    """Every error becomes JSON, Quart's own 404/405/413 included; never a traceback."""

    async def known_error(error: ProxyError | ClassificationError | SchedulerError) -> Response:
        mapped = as_proxy_error(error)
        return json_error(mapped.status, mapped.message, mapped.headers, path=request.path)

    for kind in KNOWN_ERRORS:
        app.register_error_handler(kind, known_error)

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        response = json_error(error.code or 500, _http_message(error), path=request.path)
        # Keep what the exception says about itself, e.g. Allow on a 405.
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    async def unexpected_error(error: Exception) -> Response:
        log.exception("unhandled error", exc_info=error)
        return json_error(500, "internal server error", path=request.path)


def _http_message(error: HTTPException) -> str:
    messages = {
        404: "not found",
        405: "method not allowed",
        413: "request body too large",
    }
    return messages.get(error.code or 500, (error.name or "error").lower())
