"""LeanTransport against httpcore (h11) on one corpus of well-formed and malformed responses.

A raw loopback server sends each case's exact bytes; the same request goes through LeanTransport and
through httpx's own transport, and both must end the same way: the same status, headers and body, or
an error of the same kind. Where the two parsers differ and the difference is safe, the case says
how and the test asserts that exact difference (``KNOWN``), so a change on either side is noticed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx
import pytest

from tests.proxy.raw_server import Peer, RawServer, transport_of


@dataclass(frozen=True)
class Case:
    """One response as sent on the wire; ``close`` hangs up after it (else the server waits)."""

    wire: bytes
    close: bool = True
    method: str = "GET"


HEAD_CL = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
CHUNKED_HELLO = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"

CORPUS: dict[str, Case] = {
    # well-formed
    "content-length": Case(HEAD_CL + b"\r\nhello", close=False),
    "chunked": Case(CHUNKED_HELLO, close=False),
    "chunked-upper-case-coding": Case(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n", close=False
    ),
    "chunk-extensions": Case(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n0;last\r\n\r\n",
        close=False,
    ),
    "trailers": Case(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Done\r\n\r\n"
        b"5\r\nhello\r\n0\r\nX-Done: yes\r\n\r\n",
        close=False,
    ),
    "close-delimited": Case(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello until eof"),
    "http-1.0-close-delimited": Case(b"HTTP/1.0 200 OK\r\n\r\nhello until eof"),
    "100-continue-then-final": Case(b"HTTP/1.1 100 Continue\r\n\r\n" + HEAD_CL + b"\r\nhello", close=False),
    "103-early-hints-then-final": Case(
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" + HEAD_CL + b"\r\nhello",
        close=False,
    ),
    "head-with-content-length": Case(HEAD_CL + b"\r\n", close=False, method="HEAD"),
    "204-no-body": Case(b"HTTP/1.1 204 No Content\r\n\r\n", close=False),
    "304-with-content-length-no-body": Case(
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", close=False
    ),
    "empty-reason-phrase": Case(b"HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\nok", close=False),
    "header-value-surrounding-whitespace": Case(
        b"HTTP/1.1 200 OK\r\nX-Pad:   padded  \r\nContent-Length: 2\r\n\r\nok", close=False
    ),
    "duplicate-content-length-equal": Case(HEAD_CL + b"Content-Length: 5\r\n\r\nhello", close=False),
    "large-chunk": Case(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000\r\n" + b"x" * 65536 + b"\r\n0\r\n\r\n",
        close=False,
    ),
    # malformed or cut short
    "content-length-and-chunked": Case(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    ),
    "duplicate-content-length-different": Case(HEAD_CL + b"Content-Length: 7\r\n\r\nhello"),
    "content-length-list-different": Case(b"HTTP/1.1 200 OK\r\nContent-Length: 5, 7\r\n\r\nhello"),
    "negative-content-length": Case(b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nhello"),
    "non-numeric-content-length": Case(b"HTTP/1.1 200 OK\r\nContent-Length: five\r\n\r\nhello"),
    "transfer-encoding-not-chunked": Case(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhello"),
    "transfer-encoding-gzip-chunked": Case(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    ),
    "bad-chunk-size": Case(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
    "chunk-size-overflow": Case(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nhello\r\n0\r\n\r\n"
    ),
    "chunk-longer-than-its-size": Case(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n"
    ),
    "obs-fold-header-line": Case(
        b"HTTP/1.1 200 OK\r\nX-Folded: first\r\n  second\r\nContent-Length: 2\r\n\r\nok"
    ),
    "space-before-colon": Case(b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok"),
    "bare-lf-line-endings": Case(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok"),
    "garbage-status-line": Case(b"HELLO THERE\r\n\r\n"),
    "three-digit-status-missing": Case(b"HTTP/1.1 OK\r\nContent-Length: 2\r\n\r\nok"),
    "101-switching-protocols": Case(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\n\r\n"),
    "close-mid-status-line": Case(b"HTTP/1.1 20"),
    "close-mid-headers": Case(b"HTTP/1.1 200 OK\r\nContent-Len"),
    "close-mid-content-length-body": Case(HEAD_CL + b"\r\nhel"),
    "close-mid-chunk": Case(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"),
    "close-before-last-chunk": Case(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"),
    "close-mid-trailers": Case(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Done: y"
    ),
    "close-without-response": Case(b""),
}

REFUSED = ("error", "RemoteProtocolError")
HELLO_CHUNKED = ("response", 200, "OK", [(b"transfer-encoding", b"chunked")], b"hello")

# Where the two differ, each safely: (LeanTransport's outcome, httpcore's outcome). LeanTransport is
# stricter: llhttp refuses what RFC 9112 lets a client refuse, so the gateway answers 502 instead of
# relaying a response whose framing is ambiguous. Ollama (Go's net/http) sends none of these.
KNOWN: dict[str, tuple[tuple, tuple]] = {
    # RFC 9112 §6.3: both framings "ought to be handled as an error" (a smuggling vector); h11 uses chunked.
    "content-length-and-chunked": (
        REFUSED,
        ("response", 200, "OK", [(b"content-length", b"3"), (b"transfer-encoding", b"chunked")], b"hello"),
    ),
    # RFC 9110 §8.6: a recipient MAY reject repeated equal values or fold them; h11 folds them.
    "duplicate-content-length-equal": (
        REFUSED,
        ("response", 200, "OK", [(b"content-length", b"5")], b"hello"),
    ),
    # RFC 9112 §5.2 lets a user agent unfold obs-fold; llhttp refuses it. A 502, never a mangled header.
    "obs-fold-header-line": (
        REFUSED,
        ("response", 200, "OK", [(b"x-folded", b"first second"), (b"content-length", b"2")], b"ok"),
    ),
    # RFC 9112 §2.2: a recipient MAY accept a bare LF; llhttp does not.
    "bare-lf-line-endings": (REFUSED, ("response", 200, "OK", [(b"content-length", b"2")], b"ok")),
    # h11 lowercases the coding; LeanTransport keeps the bytes. Transfer-Encoding is hop-by-hop and never
    # relayed, and both decode the chunks.
    "chunked-upper-case-coding": (
        ("response", 200, "OK", [(b"transfer-encoding", b"CHUNKED")], b"hello"),
        HELLO_CHUNKED,
    ),
}


async def outcome(kind: str, url: str, method: str) -> tuple:
    """How one request ends on a transport: ("response", status, reason, headers, body) or ("error", kind)."""
    async with httpx.AsyncClient(transport=transport_of(kind), timeout=httpx.Timeout(2.0)) as client:
        try:
            async with client.stream(method, url) as response:
                body = b"".join([part async for part in response.aiter_raw()])
        except httpx.TransportError as exc:
            return ("error", type(exc).__name__)
    headers = [(name.lower(), value) for name, value in response.headers.raw]
    return ("response", response.status_code, response.reason_phrase, headers, body)


async def served(case: Case, kind: str) -> tuple:
    """The outcome of ``case`` on transport ``kind``, from a fresh server."""

    async def handle(peer: Peer) -> None:
        if await peer.read_request() is None:
            return
        await peer.send(case.wire)
        if not case.close:
            await peer.wait_client_close()

    server = await RawServer(handle).start()
    try:
        return await outcome(kind, server.url + "/api/chat", case.method)
    finally:
        await server.stop()


@pytest.mark.parametrize("name", sorted(CORPUS))
async def test_lean_transport_ends_each_response_as_httpcore_does(name):
    case = CORPUS[name]
    lean, reference = await asyncio.gather(served(case, "lean"), served(case, "httpcore"))
    if name in KNOWN:
        assert (lean, reference) == KNOWN[name]
    else:
        assert lean == reference
