"""Coding agents through the gateway with their official SDKs (docs/contract.md §3, §5).

Claude Code speaks Anthropic Messages (``anthropic``), Codex the OpenAI
Responses API with zstd bodies (``openai``), transcription clients multipart.
The upstream is the bundled simulator (README "The bundled Ollama simulator"),
which speaks both as Ollama does; a ``!say`` line fixes the answer's text and
``X-Sim-Fault: drop_mid`` cuts a stream. Byte identity with a direct request is
in tests/proxy/test_real_clients.py.
"""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pytest

from tests.proxy.support import log_rows, sse_events
from tests.waiting import wait_until

pytestmark = pytest.mark.costly  # each test serves the gateway on a real socket

TEXT = "Hello there, agent"
HELLO = [{"role": "user", "content": f"Say hello\n!say {TEXT}"}]
DROP = {"X-Sim-Fault": "drop_mid,after=3"}  # the simulator closes the connection after 3 chunks


def rows_for(settings, endpoint, count):
    """The request-log rows of one endpoint, once ``count`` of them are written."""

    def written():
        rows = [row for row in log_rows(settings) if row.endpoint == endpoint]
        return rows if len(rows) == count else None

    return wait_until(written)


# --- Anthropic Messages (Claude Code) -------------------------------------------------------------


def test_the_anthropic_sdk_gets_a_message_whole_and_streamed(agents):
    server, key, settings = agents()
    with anthropic.Anthropic(base_url=server.url, api_key=key, max_retries=0) as client:
        whole = client.messages.create(model="llama3.2", max_tokens=64, messages=HELLO)
        assert whole.content[0].text == TEXT
        with client.messages.stream(model="llama3.2", max_tokens=64, messages=HELLO) as stream:
            streamed = "".join(stream.text_stream)
            final = stream.get_final_message()
    assert streamed == TEXT
    usage = (final.usage.input_tokens, final.usage.output_tokens)
    assert usage == (whole.usage.input_tokens, whole.usage.output_tokens) and min(usage) > 0
    rows = rows_for(settings, "/v1/messages", 2)
    assert [(r.status, r.prompt_tokens, r.completion_tokens) for r in rows] == [(200, *usage)] * 2


def test_a_broken_anthropic_stream_ends_with_an_error_event_the_sdk_raises(agents):
    server, key, _ = agents()
    with anthropic.Anthropic(base_url=server.url, api_key=key, max_retries=0, default_headers=DROP) as client:
        with pytest.raises(anthropic.APIStatusError) as raised:
            with client.messages.stream(model="llama3.2", max_tokens=64, messages=HELLO) as stream:
                for _ in stream.text_stream:
                    pass
    assert raised.value.body["type"] == "error"
    assert raised.value.body["error"]["type"] == "api_error"
    assert "Ollama dropped the connection" in raised.value.body["error"]["message"]


def test_a_broken_anthropic_stream_never_fakes_its_end(agents):
    server, key, _ = agents()
    body = {"model": "llama3.2", "max_tokens": 64, "messages": HELLO, "stream": True}
    response = httpx.post(
        server.url + "/v1/messages", json=body, headers={"X-API-Key": key, **DROP}, timeout=30
    )
    events = sse_events(response.content)
    assert events[-1].startswith("event: error\n")
    assert not any("message_stop" in event for event in events)


@pytest.mark.parametrize(
    ("status", "error_class", "error_type"),
    [
        (401, anthropic.AuthenticationError, "authentication_error"),
        (403, anthropic.PermissionDeniedError, "permission_error"),
        (413, anthropic.APIStatusError, "request_too_large"),
        (503, anthropic.InternalServerError, "overloaded_error"),
    ],
)
def test_refusals_reach_the_anthropic_sdk_with_the_gateways_message(agents, status, error_class, error_type):
    # 403: a cloud model with CLOUD_MODELS=off; 413: over MAX_BODY; 503: no healthy backend.
    overrides = {"MAX_BODY": "2KiB", "CLOUD_MODELS": "off"}
    if status == 503:
        overrides["OLLAMA_URLS"] = "http://127.0.0.1:9=1"
    server, key, _ = agents(**overrides)
    model = "gpt-oss:120b-cloud" if status == 403 else "llama3.2"
    content = "x" * 4096 if status == 413 else "hi"
    api_key = "sdk_" + "x" * 43 if status == 401 else key
    with anthropic.Anthropic(base_url=server.url, api_key=api_key, max_retries=0) as client:
        with pytest.raises(error_class) as raised:
            client.messages.create(model=model, max_tokens=8, messages=[{"role": "user", "content": content}])
    assert raised.value.status_code == status
    assert raised.value.body["type"] == "error"
    assert raised.value.body["error"]["type"] == error_type
    assert raised.value.body["error"]["message"] in str(raised.value)
    if status == 403:
        assert raised.value.body["error"]["message"] == "cloud models are disabled on this gateway"


# --- OpenAI Responses (Codex) ---------------------------------------------------------------------


def test_the_openai_sdk_gets_a_response_whole_and_streamed(agents):
    server, key, settings = agents()
    prompt = f"Say hello\n!say {TEXT}"
    with openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0) as client:
        whole = client.responses.create(model="llama3.2", input=prompt)
        events = list(client.responses.create(model="llama3.2", input=prompt, stream=True))
    assert whole.output_text == TEXT
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == TEXT
    assert events[-1].type == "response.completed"
    usage = (events[-1].response.usage.input_tokens, events[-1].response.usage.output_tokens)
    assert usage == (whole.usage.input_tokens, whole.usage.output_tokens) and min(usage) > 0
    rows = rows_for(settings, "/v1/responses", 2)
    assert [(r.prompt_tokens, r.completion_tokens) for r in rows] == [usage] * 2


def test_a_broken_responses_stream_ends_failed_never_completed(agents):
    server, key, _ = agents()
    with openai.OpenAI(
        base_url=server.url + "/v1", api_key=key, max_retries=0, default_headers=DROP
    ) as client:
        events = list(client.responses.create(model="llama3.2", input="Say hello", stream=True))
    types = [event.type for event in events]
    assert types[-2:] == ["error", "response.failed"]
    assert "response.completed" not in types
    assert "Ollama dropped the connection" in events[-2].message
    assert events[-1].response.error.message == events[-2].message


def test_a_responses_refusal_is_ollamas_json_error(agents):
    server, _, _ = agents()
    with openai.OpenAI(base_url=server.url + "/v1", api_key="sdk_" + "y" * 43, max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError) as raised:
            client.responses.create(model="llama3.2", input="hi")
    assert raised.value.status_code == 401
    assert set(raised.value.response.json()) == {"error"}


# --- Transcriptions (multipart) -------------------------------------------------------------------


def test_a_transcription_upload_reaches_ollama_byte_for_byte(agents, sim):
    server, key, settings = agents()
    audio = bytes(range(256)) * 64
    upload = ("clip.wav", audio, "audio/wav")
    with openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0) as client:
        result = client.audio.transcriptions.create(model="llama3.2", file=upload)
    with openai.OpenAI(base_url=sim.url + "/v1", api_key="unused", max_retries=0) as client:
        direct = client.audio.transcriptions.create(model="llama3.2", file=upload)
    assert result.text == direct.text != ""  # the simulator's text depends only on the audio bytes
    files = {"file": ("clip.wav", audio, "audio/wav")}
    sent = httpx.Request(
        "POST", server.url + "/v1/audio/transcriptions", data={"model": "llama3.2"}, files=files
    )
    sent.read()
    relayed = httpx.post(
        server.url + "/v1/audio/transcriptions",
        content=sent.content,
        headers={"Content-Type": sent.headers["Content-Type"], "X-API-Key": key},
        timeout=30,
    )
    assert relayed.status_code == 200 and relayed.json()["text"] == direct.text
    seen = sim.entries("/v1/audio/transcriptions")[-1]
    assert seen["body_size"] == len(sent.content)
    assert seen["headers"]["content-type"] == sent.headers["Content-Type"]
    rows = rows_for(settings, "/v1/audio/transcriptions", 2)
    assert {r.model for r in rows} == {"llama3.2"}


def test_a_transcription_without_multipart_is_400(agents, sim):
    server, key, _ = agents()
    response = httpx.post(
        server.url + "/v1/audio/transcriptions", json={"model": "x"}, headers={"X-API-Key": key}
    )
    assert response.status_code == 400 and "multipart" in response.json()["error"]
    assert not sim.entries("/v1/audio/transcriptions")


def test_the_anthropic_sdk_may_send_its_key_either_way(agents):
    server, key, _ = agents()
    body = {"model": "llama3.2", "max_tokens": 8, "messages": HELLO}
    for headers in ({"x-api-key": key}, {"Authorization": f"Bearer {key}"}):
        response = httpx.post(server.url + "/v1/messages", json=body, headers=headers, timeout=30)
        assert response.status_code == 200, response.text
        assert json.loads(response.content)["type"] == "message"
