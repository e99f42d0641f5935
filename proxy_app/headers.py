"""What passes between client and Ollama: the header policy of the relay.

Hop-by-hop headers never cross; the client's credentials, address and
origin never reach Ollama; Ollama's CORS, framing and cookies never reach
the client (CORS is decided by the gateway, see :mod:`proxy_app.cors`).
"""

from __future__ import annotations

from collections.abc import Iterable

import httpx

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Never sent to Ollama: the client's credentials and address, its Host (a
# loopback Ollama answers 403 to a Host it does not know), its Origin (Ollama
# has its own origin check; CORS is the gateway's business), Content-Length
# (recomputed by httpx) and encodings (we want raw bytes back).
NOT_FORWARDED = HOP_BY_HOP | {
    "host",
    "authorization",
    "x-api-key",
    "cookie",
    "content-length",
    "accept-encoding",
    "origin",
    "referer",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "remote-addr",  # Quart adds it to the request headers itself
    "content-encoding",  # bodies are forwarded decompressed (proxy_app/decompress.py)
}
NOT_RETURNED = HOP_BY_HOP | {"content-length", "content-encoding", "date", "server", "set-cookie"}


def forward_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The client's headers minus everything Ollama must never see."""
    pairs = list(headers)
    named = {
        token.strip().lower()
        for name, value in pairs
        if name.lower() == "connection"
        for token in value.split(",")
    }
    dropped = NOT_FORWARDED | named
    kept = [(name, value) for name, value in pairs if name.lower() not in dropped]
    kept.append(("Accept-Encoding", "identity"))
    return kept


def returned_headers(headers: httpx.Headers) -> list[tuple[str, str]]:
    """Ollama's response headers worth passing back (CORS is decided here, not there)."""
    return [
        (name, value)
        for name, value in headers.multi_items()
        if name.lower() not in NOT_RETURNED and not name.lower().startswith("access-control-")
    ]
