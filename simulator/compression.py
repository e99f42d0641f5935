"""Compressed request bodies, handled as Ollama's cloudPassthroughMiddleware does (server/cloud_proxy.go).

Ollama decompresses ``Content-Encoding: zstd`` on its OpenAI and Anthropic inference routes only, up to
20 MiB decompressed (``maxDecompressedBodySize``). Every other encoding (gzip included) and every other
route gets the bytes as they are, so the JSON parser rejects them with a 400.
"""

from __future__ import annotations

import io

import zstandard

ZSTD_PATHS = frozenset(
    {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/messages"}
)
MAX_DECOMPRESSED = 20 << 20
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
TOO_LARGE = "http: request body too large"  # Go's http.MaxBytesReader
BAD_MAGIC = "invalid input: magic number mismatch"  # klauspost/compress zstd.ErrMagicMismatch


class BodyError(ValueError):
    """The body could not be decoded; the message is Ollama's ``{"error": ...}`` text."""


def decode_body(method: str, path: str, encoding: str | None, body: bytes) -> bytes:
    """The body Ollama's handlers would read: zstd undone where Ollama undoes it, else unchanged."""
    if method != "POST" or path not in ZSTD_PATHS or encoding != "zstd":
        return body
    if not body.startswith(ZSTD_MAGIC):
        raise BodyError(BAD_MAGIC)
    try:
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body)) as reader:
            out = bytearray()
            while piece := reader.read(1 << 20):
                out += piece
                if len(out) > MAX_DECOMPRESSED:
                    raise BodyError(TOO_LARGE)
    except zstandard.ZstdError as exc:
        raise BodyError(f"zstd: {exc}") from None
    return bytes(out)
