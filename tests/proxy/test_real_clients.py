"""Stock Ollama and OpenAI clients work with the gateway's base URL, and bodies pass through unchanged."""

from __future__ import annotations

import httpx
import ollama
import openai
import pytest

from tests.proxy.support import QUESTION, chat_body, ndjson, sse_events, without_clock

# Not `costly` (each test serves the gateway, ~0.25 s): `scripts/test.sh --fast` keeps this file so that a
# fast run still drives the official clients through a real socket.


@pytest.fixture
def ollama_client():
    """Make stock Ollama clients, closed after the test."""
    made: list[ollama.Client] = []

    def make(host: str, **headers: str) -> ollama.Client:
        made.append(ollama.Client(host=host, headers=headers))
        return made[-1]

    yield make
    for item in made:
        item.close()


@pytest.fixture
def keyed(gw_settings, accounts, serve):
    """A gateway in front of the simulator and an API key for it."""
    settings = gw_settings()
    key = accounts(settings).key(priority=2)
    return serve(settings), key


def test_the_ollama_client_chats_streamed_and_not(keyed, ollama_client):
    server, key = keyed
    client = ollama_client(server.url, **{"X-API-Key": key})
    whole = client.chat(model="llama3.2", messages=QUESTION, stream=False)
    assert whole.done and whole.message.content
    parts = list(client.chat(model="llama3.2", messages=QUESTION, stream=True))
    assert parts[-1].done and sum(1 for p in parts if p.message.content) >= 2
    assert "".join(p.message.content for p in parts) == whole.message.content


def test_the_ollama_client_generates_streamed_and_not(keyed, ollama_client):
    server, key = keyed
    client = ollama_client(server.url, **{"X-API-Key": key})
    whole = client.generate(model="llama3.2", prompt="Say hi", stream=False)
    assert whole.done and whole.response
    parts = list(client.generate(model="llama3.2", prompt="Say hi", stream=True))
    assert parts[-1].done
    assert "".join(p.response for p in parts) == whole.response


def test_the_ollama_client_embeds_and_lists_models(keyed, ollama_client):
    server, key = keyed
    client = ollama_client(server.url, Authorization=f"Bearer {key}")
    embedded = client.embed(model="llama3.2", input=["a", "b"])
    assert len(embedded.embeddings) == 2 and len(embedded.embeddings[0]) > 0
    assert {m.model for m in client.list().models} >= {"llama3.2:latest"}
    assert client.show("llama3.2").modelfile is not None


def test_the_openai_client_chats_streamed_and_not(keyed):
    server, key = keyed
    with openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0) as client:
        whole = client.chat.completions.create(model="llama3.2", messages=QUESTION)
        assert whole.choices[0].message.content
        chunks = list(client.chat.completions.create(model="llama3.2", messages=QUESTION, stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == whole.choices[0].message.content
        assert [m.id for m in client.models.list()] == ["llama3.2:latest", "qwen2.5-coder:7b"]


def test_the_openai_client_embeds(keyed):
    server, key = keyed
    with openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0) as client:
        result = client.embeddings.create(model="llama3.2", input=["one", "two", "three"])
    assert len(result.data) == 3 and len(result.data[0].embedding) > 0


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/chat", chat_body()),
        ("/api/generate", {"model": "llama3.2", "prompt": "hi"}),
        ("/api/chat", chat_body(stream=False)),
        ("/v1/chat/completions", chat_body(stream=True)),
        ("/v1/completions", {"model": "llama3.2", "prompt": "hi", "stream": True}),
        ("/api/embed", {"model": "llama3.2", "input": "hi"}),
        ("/v1/messages", {"model": "llama3.2", "max_tokens": 8, "messages": QUESTION, "stream": True}),
        ("/v1/messages", {"model": "llama3.2", "max_tokens": 8, "messages": QUESTION}),
        ("/v1/responses", {"model": "llama3.2", "input": "hi", "stream": True}),
        ("/v1/responses", {"model": "llama3.2", "input": "hi"}),
    ],
)
def test_bodies_are_byte_identical_to_ollamas_but_for_the_clock(keyed, sim, path, body):
    server, key = keyed
    direct = httpx.post(sim.url + path, json=body, timeout=30)
    relayed = httpx.post(server.url + path, json=body, headers={"X-API-Key": key}, timeout=30)
    assert relayed.status_code == direct.status_code == 200
    assert relayed.headers["content-type"] == direct.headers["content-type"]
    assert without_clock(relayed.content) == without_clock(direct.content)
    if path in ("/v1/messages", "/v1/responses") and body.get("stream"):
        # Named events and no [DONE]: the gateway adds nothing of OpenAI chat's framing.
        assert b"[DONE]" not in relayed.content and sse_events(relayed.content)[0].startswith("event: ")


def test_streams_keep_their_framing(keyed):
    server, key = keyed
    native = httpx.post(server.url + "/api/chat", json=chat_body(), headers={"X-API-Key": key}, timeout=30)
    assert native.headers["content-type"] == "application/x-ndjson"
    assert ndjson(native.content)[-1]["done"] is True
    sse = httpx.post(
        server.url + "/v1/chat/completions",
        json=chat_body(stream=True),
        headers={"X-API-Key": key},
        timeout=30,
    )
    assert sse.headers["content-type"].startswith("text/event-stream")
    assert sse_events(sse.content)[-1] == "data: [DONE]"


def test_proxied_responses_say_who_asked_and_how_long_it_waited(keyed):
    server, key = keyed
    response = httpx.post(
        server.url + "/api/chat", json=chat_body(stream=False), headers={"X-API-Key": key}, timeout=30
    )
    assert response.headers["X-Seadragon-Source"] == "custom_app"
    assert len(response.headers["X-Request-ID"]) == 32
    assert int(response.headers["X-Seadragon-Queue-Wait"]) >= 0
