"""Compressed request bodies (``Content-Encoding: gzip`` or ``zstd``, as Codex sends), docs/contract.md §3.

``MAX_BODY`` bounds the *decompressed* size, and it is checked while
decompressing: output is produced in pieces of at most :data:`PIECE` bytes and
the decoder stops as soon as the total passes the limit, so a few kilobytes
that would expand to a gibibyte cost at most ``limit + PIECE`` bytes. zstd
frames may also ask for a huge window (the decoder's history buffer): the
window is capped at :data:`ZSTD_MAX_WINDOW`, as Ollama caps its own decoder
(``zstd.WithDecoderMaxMemory(8<<20)`` in its ``middleware/openai.go``).
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator

import zstandard

from proxy_app.errors import BadRequest, ProxyError

PIECE = 64 * 1024  # bytes of output produced per step
ZSTD_MAX_WINDOW = 8 * 1024 * 1024
ENCODINGS = ("gzip", "zstd")
_ALIASES = {"x-gzip": "gzip", "identity": ""}


class BodyTooLarge(ProxyError):
    """The body is over ``MAX_BODY`` (413), compressed or once decompressed."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body too large (limit {limit} bytes)")


class UnsupportedEncoding(ProxyError):
    """A ``Content-Encoding`` the gateway cannot read (415)."""

    def __init__(self, encoding: str) -> None:
        super().__init__(415, f"unsupported Content-Encoding {encoding!r}: send gzip, zstd or identity")


def body_encoding(header: str | None) -> str:
    """The one encoding a ``Content-Encoding`` header names: ``""``, ``gzip`` or ``zstd``; else 415."""
    if not header:
        return ""
    names = [_ALIASES.get(part.strip().lower(), part.strip().lower()) for part in header.split(",")]
    names = [name for name in names if name]
    if not names:
        return ""
    if len(names) > 1 or names[0] not in ENCODINGS:
        raise UnsupportedEncoding(header.strip()[:100])
    return names[0]


def decompress(data: bytes, encoding: str, limit: int) -> bytes:
    """``data`` decoded; 413 as soon as the output passes ``limit`` bytes, 400 if it is corrupt."""
    pieces = _gzip_pieces(data) if encoding == "gzip" else _zstd_pieces(data)
    out: list[bytes] = []
    size = 0
    try:
        for piece in pieces:
            size += len(piece)
            if size > limit:
                raise BodyTooLarge(limit)
            out.append(piece)
    except (zlib.error, zstandard.ZstdError, EOFError) as exc:
        raise BadRequest(f"cannot decompress the {encoding} request body: {exc}") from None
    return b"".join(out)


def _gzip_pieces(data: bytes) -> Iterator[bytes]:
    # Concatenated members are one body (RFC 1952 §2.2); each step yields at most PIECE bytes.
    while data:
        decoder = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        pending = data
        while pending and not decoder.eof:
            yield decoder.decompress(pending, PIECE)
            pending = decoder.unconsumed_tail
        while not decoder.eof:
            piece = decoder.decompress(b"", PIECE)
            if not piece:
                raise EOFError("the gzip stream ends early")
            yield piece
        data = decoder.unused_data


def _zstd_pieces(data: bytes) -> Iterator[bytes]:
    decoder = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
    with decoder.stream_reader(io.BytesIO(data), read_across_frames=True) as reader:
        while piece := reader.read(PIECE):
            yield piece
    # The reader ends quietly on a cut frame; its output was within the limit,
    # so running each frame through once more to see it end costs no more.
    while data:
        frame = decoder.decompressobj()
        frame.decompress(data)
        if not frame.eof:
            raise EOFError("the zstd stream ends early")
        data = frame.unused_data
