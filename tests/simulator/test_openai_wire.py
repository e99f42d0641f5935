"""The OpenAI compatibility layer, checked with the official OpenAI client and with raw bytes."""

from __future__ import annotations

import base64
import json
import struct

import httpx
import openai
import pytest

from tests.simulator.helpers import QUESTION, chat_body, sse_data


def test_chat_completion_is_one_object_with_usage(openai_client: openai.OpenAI) -> None:
    answer = openai_client.chat.completions.create(model="llama3.2", messages=QUESTION)
    assert answer.object == "chat.completion" and answer.id.startswith("chatcmpl-")
    assert answer.model == "llama3.2" and answer.system_fingerprint == "fp_ollama"
    assert answer.choices[0].finish_reason == "stop"
    assert len(answer.choices[0].message.content.split()) == 5
    assert answer.usage.completion_tokens == 5
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + 5


def test_chat_stream_sends_deltas_then_usage_when_asked(openai_client: openai.OpenAI) -> None:
    chunks = list(
        openai_client.chat.completions.create(
            model="llama3.2", messages=QUESTION, stream=True, stream_options={"include_usage": True}
        )
    )
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    whole = openai_client.chat.completions.create(model="llama3.2", messages=QUESTION)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks[:-1]] == [None] * 5 + ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5


def test_chat_stream_is_sse_ending_with_done(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json=chat_body(stream=True))
    assert response.headers["content-type"] == "text/event-stream"
    payloads = sse_data(response.text)
    assert payloads[-1] == "[DONE]"
    assert len(payloads) == 7  # five tokens, the finish_reason chunk, [DONE]; no usage unless asked
    assert "usage" not in json.loads(payloads[-2])


def test_max_tokens_gives_finish_reason_length(openai_client: openai.OpenAI) -> None:
    answer = openai_client.chat.completions.create(model="llama3.2", messages=QUESTION, max_tokens=3)
    assert answer.choices[0].finish_reason == "length" and answer.usage.completion_tokens == 3


def test_completions_streamed_and_not(openai_client: openai.OpenAI) -> None:
    whole = openai_client.completions.create(model="llama3.2", prompt="Once upon a time")
    assert whole.object == "text_completion" and whole.choices[0].finish_reason == "stop"
    assert whole.usage.completion_tokens == 5
    chunks = list(openai_client.completions.create(model="llama3.2", prompt="Once upon a time", stream=True))
    assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_embeddings_as_floats_and_as_base64(openai_client: openai.OpenAI) -> None:
    floats = openai_client.embeddings.create(model="llama3.2", input=["sea", "dragon"])
    assert [d.index for d in floats.data] == [0, 1] and len(floats.data[0].embedding) == 384
    assert floats.usage.prompt_tokens == 2
    packed = openai_client.embeddings.create(model="llama3.2", input="sea", encoding_format="base64")
    raw = base64.b64decode(packed.data[0].embedding)
    decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert decoded == pytest.approx(floats.data[0].embedding, abs=1e-6)


def test_models_are_listed_and_retrieved(openai_client: openai.OpenAI) -> None:
    assert [m.id for m in openai_client.models.list()] == ["llama3.2:latest", "qwen2.5-coder:7b"]
    model = openai_client.models.retrieve("qwen2.5-coder:7b")
    assert model.owned_by == "library" and model.object == "model"
    with pytest.raises(openai.NotFoundError):
        openai_client.models.retrieve("absent:1b")


def test_errors_on_v1_have_openais_shape(openai_client: openai.OpenAI, http: httpx.Client) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.chat.completions.create(model="absent", messages=QUESTION)
    assert caught.value.body == {
        "message": 'model "absent" not found, try pulling it first',
        "type": "not_found_error",
        "param": None,
        "code": None,
    }
    bad = http.post("/v1/chat/completions", content=b"{not json")
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_request_error"
