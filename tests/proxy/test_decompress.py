"""Decompressing request bodies within MAX_BODY, checked while decompressing (docs/contract.md §3)."""

from __future__ import annotations

import gzip
import tracemalloc

import pytest
import zstandard

from proxy_app.decompress import (
    PIECE,
    ZSTD_MAX_WINDOW,
    BodyTooLarge,
    UnsupportedEncoding,
    body_encoding,
    decompress,
)
from proxy_app.errors import BadRequest

MiB = 1 << 20


def zstd_zeros(size: int, **params) -> bytes:
    """``size`` zero bytes as one zstd frame, compressed a MiB at a time (never held whole)."""
    writer = zstandard.ZstdCompressor(**params).compressobj()
    block = b"\0" * MiB
    return b"".join(writer.compress(block) for _ in range(size // MiB)) + writer.flush()


def gzip_zeros(size: int) -> bytes:
    import zlib

    writer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"\0" * MiB
    return b"".join(writer.compress(block) for _ in range(size // MiB)) + writer.flush()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, ""),
        ("", ""),
        ("identity", ""),
        ("gzip", "gzip"),
        ("x-gzip", "gzip"),
        ("ZSTD", "zstd"),
        (" zstd ", "zstd"),
    ],
)
def test_it_reads_the_encodings_it_knows(header, expected):
    assert body_encoding(header) == expected


@pytest.mark.parametrize("header", ["br", "deflate", "gzip, zstd", "compress"])
def test_any_other_encoding_is_415(header):
    with pytest.raises(UnsupportedEncoding) as raised:
        body_encoding(header)
    assert raised.value.status == 415


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
def test_a_body_within_the_limit_comes_back_whole(encoding):
    data = b'{"model": "llama3.2", "input": "' + b"word " * 50_000 + b'"}'
    packed = gzip.compress(data) if encoding == "gzip" else zstandard.ZstdCompressor().compress(data)
    assert decompress(packed, encoding, len(data)) == data
    with pytest.raises(BodyTooLarge):
        decompress(packed, encoding, len(data) - 1)


def test_concatenated_gzip_members_are_one_body():
    assert decompress(gzip.compress(b"ab") + gzip.compress(b"cd"), "gzip", 10) == b"abcd"


def test_several_zstd_frames_are_one_body():
    compressor = zstandard.ZstdCompressor()
    assert decompress(compressor.compress(b"ab") + compressor.compress(b"cd"), "zstd", 10) == b"abcd"


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
def test_a_truncated_or_corrupt_body_is_400(encoding):
    packed = (
        gzip.compress(b"x" * 1000) if encoding == "gzip" else zstandard.ZstdCompressor().compress(b"x" * 1000)
    )
    for broken in (packed[: len(packed) // 2], b"not compressed at all"):
        with pytest.raises(BadRequest):
            decompress(broken, encoding, MiB)


@pytest.mark.costly  # decompresses bombs
@pytest.mark.parametrize(("encoding", "bomb"), [("zstd", zstd_zeros), ("gzip", gzip_zeros)])
def test_a_bomb_is_refused_while_decompressing_without_holding_its_output(encoding, bomb):
    packed = bomb(256 * MiB)
    assert len(packed) < MiB // 2
    tracemalloc.start()
    try:
        with pytest.raises(BodyTooLarge):
            decompress(packed, encoding, 4 * MiB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The limit plus one piece and list overhead; 256 MiB had it been expanded whole.
    assert peak < 4 * MiB + 4 * PIECE + MiB


def test_a_zstd_frame_asking_for_a_huge_window_is_refused():
    # Window log 27 (128 MiB of history) is more than the decoder will allocate.
    packed = zstd_zeros(16 * MiB, compression_params=zstandard.ZstdCompressionParameters(window_log=27))
    assert ZSTD_MAX_WINDOW < 1 << 27
    with pytest.raises(BadRequest, match="zstd"):
        decompress(packed, "zstd", 64 * MiB)
