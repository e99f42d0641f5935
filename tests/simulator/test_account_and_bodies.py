"""Status and account endpoints of a signed-out Ollama; compressed request bodies as Ollama treats them."""

from __future__ import annotations

import gzip
import json

import httpx
import pytest
import zstandard

from simulator import ThreadHandle
from simulator.compression import MAX_DECOMPRESSED
from tests.simulator.helpers import chat_body


def test_status_says_cloud_is_enabled(http: httpx.Client) -> None:
    response = http.get("/api/status")
    assert response.status_code == 200 and response.json() == {"cloud": {"disabled": False, "source": "none"}}


def test_model_recommendations_are_ollamas_defaults(http: httpx.Client) -> None:
    recommendations = http.get("/api/experimental/model-recommendations").json()["recommendations"]
    assert (
        recommendations[0]["model"] == "kimi-k2.6:cloud" and recommendations[0]["context_length"] == 262_144
    )
    assert {
        "model": "gemma4",
        "description": "Reasoning and code generation locally",
        "vram_bytes": 12 * 10**9,
    } in (recommendations)


def test_whoami_is_unauthorized_with_a_signin_url(http: httpx.Client) -> None:
    response = http.post("/api/me")
    body = response.json()
    assert response.status_code == 401 and body["error"] == "unauthorized"
    assert body["signin_url"].startswith("https://ollama.com/connect?name=") and "&key=" in body["signin_url"]


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/api/signout"), ("DELETE", "/api/user/keys/c3NoLWVk")]
)
def test_signing_out_a_server_not_signed_in(http: httpx.Client, method: str, path: str) -> None:
    response = http.request(method, path)
    assert response.status_code == 401 and response.json() == {"error": "you are not currently signed in"}


@pytest.mark.parametrize("path", ["/api/experimental/web_search", "/api/experimental/web_fetch"])
def test_web_tools_need_a_body_then_a_signed_in_server(
    http: httpx.Client, sim: ThreadHandle, path: str
) -> None:
    empty = http.post(path, content=b"  ")
    assert empty.status_code == 400 and empty.json() == {"error": "missing request body"}
    refused = http.post(path, json={"query": "sea dragons"})
    assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
    assert [e["body"] for e in sim.entries(path)][-1] == {"query": "sea dragons"}


def test_zstd_body_is_decompressed_on_openai_routes(sim: ThreadHandle) -> None:
    raw = json.dumps(chat_body()).encode()
    packed = zstandard.ZstdCompressor().compress(raw)
    response = httpx.post(
        f"{sim.url}/v1/chat/completions",
        content=packed,
        headers={"Content-Type": "application/json", "Content-Encoding": "zstd"},
    )
    assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"]
    (entry,) = sim.entries("/v1/chat/completions")
    assert entry["body_size"] == len(raw) and entry["headers"]["content-encoding"] == "zstd"


@pytest.mark.parametrize(
    ("packed", "error"),
    [
        (b"not zstd at all", "invalid input: magic number mismatch"),
        (zstandard.ZstdCompressor().compress(b" " * (MAX_DECOMPRESSED + 1)), "http: request body too large"),
    ],
)
def test_bad_or_oversized_zstd_is_a_400_in_ollamas_shape(
    sim: ThreadHandle, packed: bytes, error: str
) -> None:
    headers = {"Content-Type": "application/json", "Content-Encoding": "zstd"}
    response = httpx.post(f"{sim.url}/v1/messages", content=packed, headers=headers)
    assert response.status_code == 400 and response.json() == {"error": error}


def test_gzip_and_zstd_elsewhere_are_not_decoded_like_ollama(sim: ThreadHandle) -> None:
    raw = json.dumps(chat_body()).encode()
    gzipped = httpx.post(
        f"{sim.url}/v1/chat/completions",
        content=gzip.compress(raw),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert gzipped.status_code == 400 and gzipped.json()["error"]["type"] == "invalid_request_error"
    native = httpx.post(
        f"{sim.url}/api/chat",
        content=zstandard.ZstdCompressor().compress(raw),
        headers={"Content-Type": "application/json", "Content-Encoding": "zstd"},
    )
    assert native.status_code == 400 and "invalid JSON body" in native.json()["error"]
