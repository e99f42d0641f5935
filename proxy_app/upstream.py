"""The upstream relay: one httpx client, timeouts and streaming (header policy: :mod:`proxy_app.headers`).

Timeouts are ours, not httpx's: connecting may take ``CONNECT_TIMEOUT``, the
response headers ``FIRST_BYTE_TIMEOUT``, and each later chunk ``IDLE_TIMEOUT``;
a stream as a whole has no limit. Bodies pass through byte for byte: raw
chunks, never re-serialised, and ``Accept-Encoding: identity`` upstream so
the raw bytes are the real bytes.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterable, AsyncIterator, Callable
from urllib.parse import urlsplit, urlunsplit

import httpx

from common.settings import Settings
from proxy_app.dialects import NDJSON, OPENAI_SSE, StreamDialect
from proxy_app.errors import DEFAULT_RETRY_AFTER, BadGateway, GatewayTimeout, ProxyError, Unavailable
from proxy_app.transport import LeanTransport

ERROR_BODY_LIMIT = 64 * 1024  # bytes of an Ollama error body we read and pass on


def redact_url(url: str) -> str:
    """A backend URL without credentials, fit for /health and logs."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


# Slots, not the connection pool, limit concurrency.
MAX_KEEPALIVE = 256  # idle connections kept per backend


def make_transport(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncBaseTransport:
    """The connection pool to Ollama: ``transport`` if given (tests), else a :class:`LeanTransport`."""
    if transport is not None:
        return transport
    # httpcore costs ~4x the CPU per request and scales badly with concurrency;
    # https backends still go through httpx's own transport (LeanTransport's fallback).
    expiry = settings.upstream_keepalive_expiry
    limits = httpx.Limits(
        max_connections=None, max_keepalive_connections=MAX_KEEPALIVE, keepalive_expiry=expiry
    )
    return LeanTransport(
        max_keepalive=MAX_KEEPALIVE,
        keepalive_expiry=expiry,
        fallback=httpx.AsyncHTTPTransport(limits=limits, trust_env=False),
    )


def upstream_timeout(settings: Settings) -> httpx.Timeout:
    """Connect and write timeouts; reads are timed per phase by :class:`Exchange` (first byte, then idle)."""
    return httpx.Timeout(
        connect=settings.connect_timeout,
        read=None,
        write=settings.idle_timeout,
        pool=settings.connect_timeout,
    )


def make_client(settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """A client on the upstream transport (health checks), with every timeout set on purpose."""
    return httpx.AsyncClient(
        transport=make_transport(settings, transport),
        timeout=upstream_timeout(settings),
        trust_env=False,  # an HTTP_PROXY in the environment must not capture Ollama traffic
        follow_redirects=False,
    )


def inband_error(
    message: str, *, sse: bool, tail: bytes, dialect: StreamDialect | None = None, status: int = 502
) -> bytes:
    """The last line/event of a stream that failed after its first byte, in its protocol's shape."""
    dialect = dialect or (OPENAI_SSE if sse else NDJSON)
    return dialect.inband_error(message, tail=tail, status=status)


def error_message(body: bytes) -> str:
    """The message in an Ollama/OpenAI error body (``{"error": ...}``), or its text."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()[:300]
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            error = error.get("message")
        if isinstance(error, str):
            return error[:300]
    return ""


@functools.lru_cache(maxsize=1024)
def _url(url: str) -> httpx.URL:
    # Parsed once per backend and path: a handful of distinct values in practice.
    return httpx.URL(url)


async def _raw_chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    # The transport's own stream: aiter_raw's re-chunking and per-chunk context are of no use here.
    async for chunk in response.stream:
        yield chunk


class Upstream:
    """Opens exchanges with a backend through the shared client."""

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport,
        settings: Settings,
        on_connect_error: Callable[[str, str], None] | None = None,
    ) -> None:
        # The transport, not an AsyncClient: the client's per-request work (URL merging,
        # cookies, auth and redirect hooks, default headers) is of no use to a relay and
        # cost as much CPU as the transport itself.
        self.transport = transport
        self._timeout = upstream_timeout(settings).as_dict()
        self.settings = settings
        self.on_connect_error = on_connect_error
        self._exchanges: set[Exchange] = set()

    def open_connections(self) -> int:
        """Responses from Ollama being relayed right now (for /metrics)."""
        return len(self._exchanges)

    def abort_all(self, error: ProxyError) -> int:
        """End every exchange being relayed with ``error`` (shutdown past its grace); how many."""
        exchanges = list(self._exchanges)
        for exchange in exchanges:
            exchange.abort(error)
        return len(exchanges)

    async def open(
        self,
        base_url: str,
        method: str,
        path: str,
        *,
        content: bytes | AsyncIterable[bytes] | None,
        headers: list[tuple[str, str]],
    ) -> Exchange:
        """Send the request and wait for Ollama's status line (502/504 as :class:`ProxyError`)."""
        request = httpx.Request(
            method,
            _url(base_url + path),
            content=content,
            headers=wire_headers(headers),
            extensions={"timeout": self._timeout},
        )
        try:
            async with asyncio.timeout(self.settings.first_byte_timeout):
                response = await self.transport.handle_async_request(request)
        except TimeoutError:
            raise GatewayTimeout(
                f"Ollama sent no response within {self.settings.first_byte_timeout:g} s"
            ) from None
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            if self.on_connect_error is not None:
                self.on_connect_error(base_url, f"{type(exc).__name__}: {exc}")
            raise BadGateway("cannot connect to Ollama") from None
        except httpx.TransportError as exc:
            raise BadGateway(f"Ollama failed before answering ({type(exc).__name__})") from None
        exchange = Exchange(response, self.settings.idle_timeout, self._exchanges.discard)
        self._exchanges.add(exchange)
        return exchange


class Exchange:
    """One upstream response being relayed; always :meth:`aclose` it."""

    def __init__(
        self,
        response: httpx.Response,
        idle_timeout: float,
        on_close: Callable[[Exchange], None] | None = None,
    ) -> None:
        self.response = response
        self._on_close = on_close
        self.idle_timeout = idle_timeout
        self.failure: ProxyError | None = None  # set when a stream broke after its first byte
        self._chunks = _raw_chunks(response)
        self._aborted: ProxyError | None = None
        self._waiting: asyncio.Timeout | None = None  # the idle timer of the read in progress

    def abort(self, error: ProxyError) -> None:
        """End the relay now with ``error`` (in-band if streaming): at shutdown's grace end or on a cancel."""
        self._aborted = error
        if self._waiting is not None:
            # Firing the read's own timer costs nothing per chunk, unlike racing every read.
            self._waiting.reschedule(asyncio.get_running_loop().time())

    @property
    def status_code(self) -> int:
        """Ollama's HTTP status."""
        return self.response.status_code

    @property
    def is_sse(self) -> bool:
        """True when Ollama answered with Server-Sent Events (the /v1 streams)."""
        return self.response.headers.get("content-type", "").startswith("text/event-stream")

    async def _next(self) -> bytes | None:
        if self._aborted is not None:
            raise self._aborted
        try:
            async with asyncio.timeout(self.idle_timeout) as self._waiting:
                return await anext(self._chunks)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            if self._aborted is not None:
                raise self._aborted from None
            raise GatewayTimeout(f"Ollama went silent for {self.idle_timeout:g} s mid-response") from None
        except httpx.TransportError as exc:
            raise BadGateway(f"Ollama dropped the connection mid-response ({type(exc).__name__})") from None
        finally:
            self._waiting = None

    async def read(self, limit: int | None = None) -> bytes:
        """The whole body (or its first ``limit`` bytes); :class:`ProxyError` if it breaks."""
        parts: list[bytes] = []
        size = 0
        while (chunk := await self._next()) is not None:
            parts.append(chunk)
            size += len(chunk)
            if limit is not None and size >= limit:
                break
        body = b"".join(parts)
        return body if limit is None else body[:limit]

    async def refusal(self) -> tuple[ProxyError | None, bytes]:
        """For a non-2xx answer: the error to send instead (None: pass the 4xx through) and the body."""
        body = await self.read(ERROR_BODY_LIMIT)
        status = self.status_code
        detail = error_message(body)
        if status == 503:
            retry_after = self.response.headers.get("retry-after", "")
            seconds = int(retry_after) if retry_after.isdigit() else DEFAULT_RETRY_AFTER
            return Unavailable(f"Ollama is busy: {detail}" if detail else "Ollama is busy", seconds), body
        if status >= 500:
            suffix = f": {detail}" if detail else ""
            return BadGateway(f"Ollama failed (HTTP {status}){suffix}"), body
        if status >= 400:
            return None, body
        # 1xx/3xx have no meaning for an Ollama API call.
        return BadGateway(f"Ollama answered with an unexpected HTTP {status}"), body

    async def stream(self, dialect: StreamDialect | None = None) -> AsyncIterator[bytes]:
        """Raw chunks as they come; a failure ends with an in-band error in ``dialect``, never a fake done."""
        tail = b""
        while True:
            try:
                chunk = await self._next()
            except ProxyError as exc:
                self.failure = exc
                sse = self.is_sse
                yield inband_error(exc.message, sse=sse, tail=tail, dialect=dialect, status=exc.status)
                return
            if chunk is None:
                return
            if chunk:
                tail = chunk[-2:] if len(chunk) >= 2 else (tail + chunk)[-2:]
                yield chunk

    async def aclose(self) -> None:
        """Close the upstream response (idempotent); an unfinished one closes its connection."""
        on_close, self._on_close = self._on_close, None
        try:
            await self._chunks.aclose()
        finally:
            if on_close is not None:
                on_close(self)
            await self.response.aclose()


def wire_headers(headers: list[tuple[str, str]]) -> list[tuple[str, bytes]]:
    """Header values as the bytes the client sent (docs/contract.md §16: odd bytes are not errors).

    The ASGI server hands values over as bytes and Quart decodes them as
    latin-1; httpx would encode a ``str`` as ASCII and fail on the first
    accented byte, so each value goes back to its own bytes.
    """
    return [(name, value.encode("latin-1", "replace")) for name, value in headers]
