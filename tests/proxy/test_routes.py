"""The route table (docs/contract.md §3): what is queued, fast-laned, admin-only, and what is a 404."""

from __future__ import annotations

import pytest

from proxy_app.errors import NotFound
from proxy_app.routes import Lane, MethodNotAllowed, resolve, wants_stream


@pytest.mark.parametrize(
    "path",
    [
        "/api/generate",
        "/api/chat",
        "/api/embed",
        "/api/embeddings",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
    ],
)
def test_generations_are_queued(path):
    assert resolve("POST", path).lane is Lane.QUEUED


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/tags"),
        ("POST", "/api/show"),
        ("GET", "/api/ps"),
        ("GET", "/api/version"),
        ("GET", "/v1/models"),
        ("GET", "/v1/models/llama3.2:latest"),
        ("GET", "/v1/models/hf.co/someone/model:Q4"),
    ],
)
def test_metadata_takes_the_fast_lane(method, path):
    assert resolve(method, path).lane is Lane.FAST


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/pull"),
        ("POST", "/api/push"),
        ("POST", "/api/create"),
        ("POST", "/api/copy"),
        ("DELETE", "/api/delete"),
        ("HEAD", "/api/blobs/sha256:" + "a" * 64),
        ("POST", "/api/blobs/sha256-" + "b" * 64),
    ],
)
def test_model_management_is_its_own_lane(method, path):
    assert resolve(method, path).lane is Lane.MANAGE


def test_the_ollama_alias_is_the_same_endpoint():
    alias = resolve("POST", "/api/ollama/chat")
    assert alias == resolve("POST", "/api/chat")
    assert resolve("POST", "/api/ollama/pull").lane is Lane.MANAGE


@pytest.mark.parametrize(
    "path",
    [
        "/api",
        "/v1",
        "/api/",
        "/api/unknown",
        "/api//pull",
        "/api/pull/",
        "/API/PULL",
        "/api/Pull",
        "/api/../pull",
        "/api/./pull",
        "/v1/../api/pull",
        "/api/chat/../pull",
        "/api/ollama/ollama/chat",
        "/api/ollama/../pull",
        "/api/blobs/sha256:short",
        "/api/blobs/../pull",
        "/v1/models/../../api/pull",
        "/v1/models/a//b",
        "/v1/files",
        "/api/admin/whitelist",
    ],
)
def test_anything_else_is_not_found(path):
    with pytest.raises(NotFound):
        resolve("POST", path)


def test_a_known_path_with_the_wrong_method_is_405_with_allow():
    with pytest.raises(MethodNotAllowed) as caught:
        resolve("GET", "/api/chat")
    assert caught.value.status == 405
    assert caught.value.headers == {"Allow": "POST"}


def test_the_upstream_path_comes_from_the_table_never_the_client():
    assert resolve("POST", "/api/ollama/generate").upstream_path == "/api/generate"
    assert resolve("GET", "/v1/models/llama3.2:latest").upstream_path == "/v1/models/llama3.2:latest"


def test_native_generations_stream_unless_told_not_to():
    chat = resolve("POST", "/api/chat")
    assert wants_stream(chat, {}) and wants_stream(chat, {"stream": None})
    assert not wants_stream(chat, {"stream": False})


def test_openai_generations_stream_only_when_asked():
    chat = resolve("POST", "/v1/chat/completions")
    assert not wants_stream(chat, {}) and not wants_stream(chat, {"stream": "yes"})
    assert wants_stream(chat, {"stream": True})


def test_embeddings_never_stream():
    assert not wants_stream(resolve("POST", "/api/embed"), {"stream": True})
