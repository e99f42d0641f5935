"""/v1/responses and /v1/audio/transcriptions as Ollama answers them, through the official openai client."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from simulator import ThreadHandle

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def test_response_without_streaming_has_text_and_usage(openai_client: openai.OpenAI) -> None:
    response = openai_client.responses.create(
        model="llama3.2", input="Why is the sea blue?", instructions="Be brief"
    )
    assert (
        response.object == "response" and response.status == "completed" and response.id.startswith("resp_")
    )
    assert response.instructions == "Be brief" and response.completed_at is not None
    assert len(response.output_text.split()) == 5
    assert response.usage.output_tokens == 5 and response.usage.input_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + 5


def test_stream_events_in_ollamas_order_then_completed_with_usage(
    openai_client: openai.OpenAI, http: httpx.Client
) -> None:
    whole = openai_client.responses.create(model="llama3.2", input="Why is the sea blue?")
    events = list(openai_client.responses.create(model="llama3.2", input="Why is the sea blue?", stream=True))
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 5,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == whole.output_text
    completed = events[-1].response
    assert completed.output_text == text and completed.usage.output_tokens == 5
    raw = http.post("/v1/responses", json={"model": "llama3.2", "input": "x", "stream": True}).text
    assert "[DONE]" not in raw and raw.startswith("event: response.created\ndata: {")


def test_function_call_without_streaming(openai_client: openai.OpenAI) -> None:
    response = openai_client.responses.create(model="llama3.2", input="Weather in Oslo?", tools=[WEATHER])
    (call,) = response.output
    assert call.type == "function_call" and call.name == "get_weather" and call.status == "completed"
    assert call.call_id.startswith("call_") and set(json.loads(call.arguments)) == {"city"}


def test_function_call_streamed_as_whole_items(openai_client: openai.OpenAI) -> None:
    stream = openai_client.responses.create(model="llama3.2", input="Weather?", tools=[WEATHER], stream=True)
    events = list(stream)
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[2].item.status == "in_progress" and events[2].item.arguments == ""
    assert json.loads(events[4].arguments) == json.loads(events[-1].response.output[0].arguments)


def test_function_call_output_gets_a_text_answer(openai_client: openai.OpenAI) -> None:
    items = [
        {"role": "user", "content": "Weather?"},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Oslo"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
    ]
    response = openai_client.responses.create(model="llama3.2", input=items, tools=[WEATHER])
    assert response.output[0].type == "message" and response.output_text


def test_unknown_model_is_an_openai_error(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.responses.create(model="no-such-model", input="x")
    assert caught.value.body["type"] == "not_found_error"


def test_transcription_reads_the_upload_and_answers_text(openai_client: openai.OpenAI) -> None:
    audio = b"RIFF" + bytes(range(256)) * 40
    first = openai_client.audio.transcriptions.create(model="llama3.2", file=("a.wav", audio, "audio/wav"))
    again = openai_client.audio.transcriptions.create(
        model="llama3.2", file=("b.wav", audio, "audio/wav"), language="en"
    )
    other = openai_client.audio.transcriptions.create(
        model="llama3.2", file=("c.wav", audio + b"!", "audio/wav")
    )
    assert first.text == again.text != other.text and len(first.text.split()) == 5
    plain = openai_client.audio.transcriptions.create(
        model="llama3.2", file=("a.wav", audio, "audio/wav"), response_format="text"
    )
    assert plain == first.text


def test_transcription_text_format_is_text_plain(http: httpx.Client, sim: ThreadHandle) -> None:
    files = {"file": ("a.wav", b"RIFFdata", "audio/wav")}
    response = http.post(
        "/v1/audio/transcriptions", data={"model": "llama3.2", "response_format": "text"}, files=files
    )
    assert response.headers["content-type"] == "text/plain" and len(response.text.split()) == 5
    (entry,) = sim.entries("/v1/audio/transcriptions")
    assert entry["model"] == "llama3.2" and entry["body_size"] > len(b"RIFFdata")


@pytest.mark.parametrize(
    ("data", "files", "message"),
    [
        ({}, {"file": ("a.wav", b"x", "audio/wav")}, "model is required"),
        (
            {"model": "llama3.2"},
            {"other": ("a.wav", b"x", "audio/wav")},
            "file is required: http: no such file",
        ),
        ({"model": "llama3.2"}, {"file": ("a.wav", b"", "audio/wav")}, "audio file is empty"),
    ],
)
def test_transcription_errors_are_ollamas(http: httpx.Client, data: dict, files: dict, message: str) -> None:
    response = http.post("/v1/audio/transcriptions", data=data, files=files)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == message


def test_transcription_needs_a_multipart_form(http: httpx.Client) -> None:
    response = http.post("/v1/audio/transcriptions", json={"model": "llama3.2"})
    assert response.status_code == 400 and "multipart/form-data" in response.json()["error"]["message"]
