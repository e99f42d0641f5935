"""The upstream relay's parts: header filtering, timeouts, raw pass-through, in-band errors."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from proxy_app.errors import BadGateway, GatewayTimeout
from proxy_app.headers import forward_headers, returned_headers
from proxy_app.upstream import Upstream, inband_error, redact_url


class Chunks(httpx.AsyncByteStream):
    """A response body sent in the given pieces, with pauses (seconds) where a float appears."""

    def __init__(self, *parts: bytes | float, fail: Exception | None = None) -> None:
        self.parts = parts
        self.fail = fail

    async def __aiter__(self):
        for part in self.parts:
            if isinstance(part, float):
                await asyncio.sleep(part)
            else:
                yield part
        if self.fail is not None:
            raise self.fail


@pytest.fixture
def upstream_for(settings_factory):
    """An Upstream on a mock transport, with short timeouts."""
    failures: list[tuple[str, str]] = []

    def make(handler, **overrides) -> Upstream:
        settings = settings_factory(**{"FIRST_BYTE_TIMEOUT": "0.3", "IDLE_TIMEOUT": "0.3", **overrides})
        upstream = Upstream(
            httpx.MockTransport(handler), settings, lambda url, error: failures.append((url, error))
        )
        upstream.failures = failures
        return upstream

    return make


async def open_chat(upstream: Upstream):
    """POST /api/chat through the upstream."""
    return await upstream.open("http://ollama:11434", "POST", "/api/chat", content=b"{}", headers=[])


def test_forwarded_headers_drop_credentials_host_and_hop_by_hop():
    headers = [
        ("Host", "gateway"),
        ("Authorization", "Bearer sdk_x"),
        ("X-API-Key", "sdk_x"),
        ("Cookie", "a=b"),
        ("Origin", "https://chat.example"),
        ("Content-Length", "2"),
        ("Accept-Encoding", "gzip"),
        ("Connection", "keep-alive, X-Private"),
        ("X-Private", "named by Connection"),
        ("Transfer-Encoding", "chunked"),
        ("X-Forwarded-For", "10.0.0.1"),
        ("Content-Type", "application/json"),
        ("X-Sim-Fault", "status=500"),
    ]
    assert forward_headers(headers) == [
        ("Content-Type", "application/json"),
        ("X-Sim-Fault", "status=500"),
        ("Accept-Encoding", "identity"),
    ]


def test_returned_headers_leave_framing_and_cors_to_the_gateway():
    headers = httpx.Headers(
        [
            ("Content-Type", "application/x-ndjson"),
            ("Content-Length", "10"),
            ("Transfer-Encoding", "chunked"),
            ("Date", "x"),
            ("Access-Control-Allow-Origin", "*"),
            ("Set-Cookie", "a=b"),
            ("X-Ollama-Thing", "kept"),
        ]
    )
    assert returned_headers(headers) == [("content-type", "application/x-ndjson"), ("x-ollama-thing", "kept")]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:secret@gpu:11434", "http://gpu:11434"),
        ("https://token@gpu.example/ollama", "https://gpu.example/ollama"),
        ("http://u:p@[fd00::1]:11434", "http://[fd00::1]:11434"),
        ("http://gpu:11434", "http://gpu:11434"),
    ],
)
def test_backend_urls_are_shown_without_credentials(url, shown):
    assert redact_url(url) == shown


def test_an_in_band_error_starts_on_its_own_line_or_event():
    assert inband_error("boom", sse=False, tail=b'{"done":false}\n') == b'{"error": "boom"}\n'
    assert inband_error("boom", sse=False, tail=b'{"do') == b'\n{"error": "boom"}\n'
    complete = inband_error("boom", sse=True, tail=b"}\n\n")
    assert complete == b'data: {"error": {"message": "boom"}}\n\n'
    assert inband_error("boom", sse=True, tail=b"}\n") == b"\n" + complete
    assert inband_error("boom", sse=True, tail=b"}") == b"\n\n" + complete


async def test_chunks_pass_through_byte_for_byte(upstream_for):
    pieces = (b'{"a":"\xc3', b'\xa9"}\n{"b":  1 }', b"\n", b"\xff raw \x00\n")
    upstream = upstream_for(lambda r: httpx.Response(200, stream=Chunks(*pieces)))
    exchange = await open_chat(upstream)
    relayed = [chunk async for chunk in exchange.stream()]
    await exchange.aclose()
    assert b"".join(relayed) == b"".join(pieces)
    assert exchange.failure is None


@pytest.mark.costly  # waits out a timeout
async def test_silence_mid_stream_ends_with_an_in_band_error(upstream_for):
    body = Chunks(b'{"done":false}\n', 1.0, b'{"done":true}\n')
    upstream = upstream_for(lambda r: httpx.Response(200, stream=body))
    exchange = await open_chat(upstream)
    relayed = b"".join([chunk async for chunk in exchange.stream()])
    await exchange.aclose()
    assert relayed.startswith(b'{"done":false}\n{"error": "Ollama went silent')
    assert b'"done":true' not in relayed
    assert isinstance(exchange.failure, GatewayTimeout)


async def test_a_connection_lost_mid_stream_ends_with_an_in_band_error(upstream_for):
    body = Chunks(b"data: {}\n\n", fail=httpx.RemoteProtocolError("peer closed"))
    upstream = upstream_for(
        lambda r: httpx.Response(200, stream=body, headers={"Content-Type": "text/event-stream"})
    )
    exchange = await open_chat(upstream)
    relayed = b"".join([chunk async for chunk in exchange.stream()])
    await exchange.aclose()
    assert relayed.startswith(b"data: {}\n\n")
    assert relayed.endswith(b'(RemoteProtocolError)"}}\n\n')
    assert relayed.count(b"data: ") == 2
    assert isinstance(exchange.failure, BadGateway)


@pytest.mark.costly  # waits out a timeout
async def test_no_status_line_within_first_byte_timeout_is_504(upstream_for):
    async def slow(request):
        await asyncio.sleep(1.0)
        return httpx.Response(200)

    with pytest.raises(GatewayTimeout) as caught:
        await open_chat(upstream_for(slow))
    assert caught.value.status == 504


async def test_a_refused_connection_is_502_and_reported_to_the_pool(upstream_for):
    def refuse(request):
        raise httpx.ConnectError("connection refused", request=request)

    upstream = upstream_for(refuse)
    with pytest.raises(BadGateway) as caught:
        await open_chat(upstream)
    assert caught.value.status == 502
    assert upstream.failures == [("http://ollama:11434", "ConnectError: connection refused")]


async def test_open_connections_are_counted_until_closed(upstream_for):
    upstream = upstream_for(lambda r: httpx.Response(200, stream=Chunks(b"x")))
    first, second = await open_chat(upstream), await open_chat(upstream)
    assert upstream.open_connections() == 2
    await first.aclose()
    await first.aclose()
    assert upstream.open_connections() == 1
    await second.aclose()
    assert upstream.open_connections() == 0
