"""Compressed request bodies through the gateway (docs/contract.md §3): gzip and zstd as Codex sends them.

The upstream is the simulator, whose request log holds each body as it arrived (parsed, and its size).
"""

from __future__ import annotations

import gzip
import json

import httpx
import pytest
import zstandard

from tests.proxy.support import log_rows
from tests.waiting import wait_until

pytestmark = pytest.mark.costly  # each test serves the gateway on a real socket

RESPONSES_BODY = {"model": "llama3.2", "input": "Say hello", "stream": True}
CHAT_BODY = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": False}
COMPRESS = {"gzip": gzip.compress, "zstd": lambda data: zstandard.ZstdCompressor().compress(data)}


@pytest.mark.parametrize("encoding", ["zstd", "gzip"])
@pytest.mark.parametrize(("path", "body"), [("/v1/responses", RESPONSES_BODY), ("/api/chat", CHAT_BODY)])
def test_a_compressed_body_is_forwarded_decompressed(agents, sim, encoding, path, body):
    server, key, _ = agents()
    raw = json.dumps(body).encode()
    response = httpx.post(
        server.url + path,
        content=COMPRESS[encoding](raw),
        headers={"Content-Encoding": encoding, "Content-Type": "application/json", "X-API-Key": key},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    [seen] = sim.entries(path)
    assert (seen["body"], seen["body_size"]) == (body, len(raw))
    assert "content-encoding" not in seen["headers"]


def test_another_encoding_is_415_and_never_forwarded(agents, sim):
    server, key, settings = agents()
    response = httpx.post(
        server.url + "/v1/responses",
        content=b"\x1b\x00",
        headers={"Content-Encoding": "br", "Content-Type": "application/json", "X-API-Key": key},
        timeout=30,
    )
    assert response.status_code == 415
    assert "br" in response.json()["error"]
    assert not sim.entries("/v1/responses")
    assert wait_until(lambda: [r.status for r in log_rows(settings)]) == [415]


def test_a_corrupt_compressed_body_is_400(agents, sim):
    server, key, _ = agents()
    response = httpx.post(
        server.url + "/api/chat",
        content=b"\x28\xb5\x2f\xfd not really zstd",
        headers={"Content-Encoding": "zstd", "X-API-Key": key},
        timeout=30,
    )
    assert response.status_code == 400 and "zstd" in response.json()["error"]
    assert not sim.entries("/api/chat")


def test_a_zstd_bomb_is_413_without_being_expanded(agents, sim):
    # 1 GiB of zeros in a few dozen KB: refused once the output passes MAX_BODY (1 MiB here).
    server, key, _ = agents(MAX_BODY="1MiB")
    compressor = zstandard.ZstdCompressor(level=3)
    chunk = b"\0" * (1 << 20)
    writer = compressor.compressobj()
    bomb = b"".join(writer.compress(chunk) for _ in range(1024)) + writer.flush()
    assert len(bomb) < 1 << 20 < 1 << 30
    response = httpx.post(
        server.url + "/v1/responses",
        content=bomb,
        headers={"Content-Encoding": "zstd", "X-API-Key": key},
        timeout=30,
    )
    assert response.status_code == 413
    assert "1048576" in response.json()["error"]
    assert not sim.entries("/v1/responses")
