"""/v1/messages as Ollama translates Anthropic Messages: the official anthropic client and raw bytes."""

from __future__ import annotations

import json
from collections.abc import Iterator

import anthropic
import httpx
import pytest

from simulator import ThreadHandle
from tests.simulator.helpers import named_events

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    },
}
HELLO = [{"role": "user", "content": "Why is the sea blue?"}]


@pytest.fixture
def claude(sim: ThreadHandle) -> Iterator[anthropic.Anthropic]:
    """The official Anthropic client pointed at the simulator."""
    with anthropic.Anthropic(base_url=sim.url, api_key="unused", max_retries=0) as client:
        yield client


def test_message_without_streaming_is_one_message_object(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(model="llama3.2", max_tokens=100, messages=HELLO)
    assert message.type == "message" and message.role == "assistant" and message.model == "llama3.2"
    assert message.id.startswith("msg_") and len(message.id) == 4 + 24
    assert [block.type for block in message.content] == ["text"]
    assert len(message.content[0].text.split()) == 5
    assert message.stop_reason == "end_turn" and message.usage.output_tokens == 5
    assert message.usage.input_tokens > 0


def test_stream_text_equals_the_whole_answer(claude: anthropic.Anthropic) -> None:
    whole = claude.messages.create(model="llama3.2", max_tokens=100, messages=HELLO)
    with claude.messages.stream(model="llama3.2", max_tokens=100, messages=HELLO) as stream:
        text = stream.get_final_text()
        final = stream.get_final_message()
    assert text == whole.content[0].text
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 5


def test_stream_events_are_named_in_ollamas_order_without_ping_or_done(http: httpx.Client) -> None:
    body = {"model": "llama3.2", "max_tokens": 100, "stream": True, "messages": HELLO}
    response = http.post("/v1/messages", json=body)
    assert response.status_code == 200 and response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    events = named_events(response.text)
    names = [name for name, _ in events]
    assert names == (
        ["message_start", "content_block_start"]
        + ["content_block_delta"] * 5
        + ["content_block_stop", "message_delta", "message_stop"]
    )
    assert all(data["type"] == name for name, data in events)
    assert events[0][1]["message"]["content"] == [] and events[0][1]["message"]["usage"]["output_tokens"] == 0
    assert events[1][1]["content_block"] == {"type": "text", "text": ""}
    assert events[-2][1]["delta"] == {"stop_reason": "end_turn"}
    assert events[-2][1]["usage"]["output_tokens"] == 5
    assert "[DONE]" not in response.text and "ping" not in names


def test_max_tokens_caps_the_answer_and_says_max_tokens(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(model="llama3.2", max_tokens=2, messages=HELLO)
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 2


def test_tools_make_a_tool_use_block(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(model="llama3.2", max_tokens=100, messages=HELLO, tools=[WEATHER_TOOL])
    assert message.stop_reason == "tool_use"
    (block,) = message.content
    assert block.type == "tool_use" and block.name == "get_weather" and block.id.startswith("call_")
    assert isinstance(block.input["city"], str) and isinstance(block.input["days"], int)


def test_streamed_tool_use_arrives_as_one_input_json_delta(
    claude: anthropic.Anthropic, http: httpx.Client
) -> None:
    with claude.messages.stream(
        model="llama3.2", max_tokens=100, messages=HELLO, tools=[WEATHER_TOOL]
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use" and final.content[0].type == "tool_use"
    assert set(final.content[0].input) == {"city", "days"}
    body = {
        "model": "llama3.2",
        "max_tokens": 100,
        "stream": True,
        "messages": HELLO,
        "tools": [WEATHER_TOOL],
    }
    events = named_events(http.post("/v1/messages", json=body).text)
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start, delta = events[1][1], events[2][1]
    assert start["content_block"]["input"] == {} and start["content_block"]["type"] == "tool_use"
    assert delta["delta"]["type"] == "input_json_delta"
    assert set(json.loads(delta["delta"]["partial_json"])) == {"city", "days"}


def test_a_tool_result_gets_a_text_answer(claude: anthropic.Anthropic) -> None:
    first = claude.messages.create(model="llama3.2", max_tokens=100, messages=HELLO, tools=[WEATHER_TOOL])
    call = first.content[0]
    history = [
        *HELLO,
        {"role": "assistant", "content": [call.model_dump(include={"type", "id", "name", "input"})]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]},
    ]
    answer = claude.messages.create(model="llama3.2", max_tokens=100, messages=history, tools=[WEATHER_TOOL])
    assert answer.stop_reason == "end_turn" and answer.content[0].type == "text"


def test_unknown_model_is_an_anthropic_not_found_error(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        claude.messages.create(model="no-such-model", max_tokens=100, messages=HELLO)
    body = caught.value.body
    assert body["type"] == "error" and body["error"]["type"] == "not_found_error"
    assert "no-such-model" in body["error"]["message"] and body["request_id"].startswith("req_")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"max_tokens": 10, "messages": HELLO}, "model is required"),
        ({"model": "llama3.2", "messages": HELLO}, "max_tokens is required and must be positive"),
        ({"model": "llama3.2", "max_tokens": 10, "messages": []}, "messages is required"),
    ],
)
def test_bad_requests_get_ollamas_messages_in_anthropics_shape(
    http: httpx.Client, body: dict, message: str
) -> None:
    response = http.post("/v1/messages", json=body)
    assert response.status_code == 400
    error = response.json()
    assert error["type"] == "error" and error["error"] == {
        "type": "invalid_request_error",
        "message": message,
    }


def test_mid_stream_error_is_an_error_event(http: httpx.Client) -> None:
    body = {"model": "llama3.2", "max_tokens": 100, "stream": True, "messages": HELLO}
    response = http.post("/v1/messages", json=body, headers={"X-Sim-Fault": "error_mid,after=2,message=boom"})
    name, data = named_events(response.text)[-1]
    assert name == "error" and data == {"type": "error", "error": {"type": "api_error", "message": "boom"}}
