"""Tool calls in /api/chat and /v1/chat/completions streams, and ``!say`` answers on every protocol."""

from __future__ import annotations

import json

import anthropic
import httpx
import ollama
import openai
import pytest

from simulator import ThreadHandle
from tests.simulator.helpers import QUESTION, ndjson, sse_data

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["C", "F"]}},
            "required": ["city", "unit"],
        },
    },
}
XSS = (
    "<img src=x onerror=alert(1)> <script>alert(2)</script>"
    "\\n[x](javascript:alert(1))\\n```js\\nalert(3)\\n```"
)
XSS_TEXT = XSS.replace("\\n", "\n")


def test_ollama_chat_with_tools_answers_a_tool_call(ollama_client: ollama.Client) -> None:
    answer = ollama_client.chat(model="llama3.2", messages=QUESTION, tools=[WEATHER], stream=False)
    (call,) = answer.message.tool_calls
    assert call.function.name == "get_weather" and call.function.arguments["unit"] in ("C", "F")
    assert isinstance(call.function.arguments["city"], str)
    assert answer.message.content == "" and answer.done_reason == "stop" and answer.eval_count > 0


def test_ollama_chat_stream_carries_the_call_then_the_statistics(ollama_client: ollama.Client) -> None:
    parts = list(ollama_client.chat(model="llama3.2", messages=QUESTION, tools=[WEATHER], stream=True))
    assert len(parts) == 2
    assert parts[0].done is False and parts[0].message.tool_calls[0].function.name == "get_weather"
    assert parts[1].done is True and parts[1].prompt_eval_count > 0 and parts[1].eval_count > 0


def test_native_tool_call_has_ollamas_id_and_index(http: httpx.Client) -> None:
    body = {"model": "llama3.2", "messages": QUESTION, "tools": [WEATHER]}
    call = ndjson(http.post("/api/chat", json=body).text)[0]["message"]["tool_calls"][0]
    assert call["id"].startswith("call_") and len(call["id"]) == 13
    assert call["function"]["index"] == 0


def test_a_tool_result_gets_a_text_answer(ollama_client: ollama.Client) -> None:
    history = [*QUESTION, {"role": "tool", "content": "sunny", "tool_name": "get_weather"}]
    answer = ollama_client.chat(model="llama3.2", messages=history, tools=[WEATHER], stream=False)
    assert not answer.message.tool_calls and len(answer.message.content.split()) == 5


def test_openai_chat_stream_with_tool_calls_and_usage(
    openai_client: openai.OpenAI, http: httpx.Client
) -> None:
    chunks = list(
        openai_client.chat.completions.create(
            model="llama3.2",
            messages=QUESTION,
            tools=[WEATHER],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert len(chunks) == 3
    delta = chunks[0].choices[0].delta
    assert delta.role == "assistant" and delta.tool_calls[0].function.name == "get_weather"
    assert set(json.loads(delta.tool_calls[0].function.arguments)) == {"city", "unit"}
    assert chunks[1].choices[0].finish_reason == "tool_calls"
    assert chunks[2].choices == [] and chunks[2].usage.completion_tokens > 0
    payloads = sse_data(http.post("/v1/chat/completions", json={**_body(), "stream": True}).text)
    assert json.loads(payloads[-2])["choices"][0]["delta"] == {} and payloads[-1] == "[DONE]"


def test_openai_chat_without_streaming_returns_tool_calls(openai_client: openai.OpenAI) -> None:
    answer = openai_client.chat.completions.create(model="llama3.2", messages=QUESTION, tools=[WEATHER])
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls[0].type == "function"
    assert choice.message.tool_calls[0].id.startswith("call_")


def test_only_the_first_openai_delta_names_the_role(http: httpx.Client) -> None:
    payloads = sse_data(http.post("/v1/chat/completions", json={**_body(tools=False), "stream": True}).text)
    deltas = [json.loads(p)["choices"][0]["delta"] for p in payloads[:-1]]
    assert deltas[0]["role"] == "assistant" and all("role" not in d for d in deltas[1:])


def _body(tools: bool = True) -> dict:
    return {"model": "llama3.2", "messages": QUESTION, **({"tools": [WEATHER]} if tools else {})}


def _say(text: str = XSS) -> list[dict]:
    return [{"role": "user", "content": f"Please answer.\n!say {text}"}]


def test_say_sets_the_answer_on_the_native_api(ollama_client: ollama.Client, http: httpx.Client) -> None:
    parts = list(ollama_client.chat(model="llama3.2", messages=_say(), stream=True))
    assert "".join(p.message.content for p in parts) == XSS_TEXT
    assert len(parts) > 3  # chunked into tokens as usual
    raw = http.post("/api/chat", json={"model": "llama3.2", "messages": _say(), "stream": False}).text
    assert "<" not in raw and "\\u003cscript\\u003e" in raw  # escaped as Go's JSON encoder does
    generated = ollama_client.generate(model="llama3.2", prompt="!say hi  there")
    assert generated.response == "hi  there"


def test_say_wins_over_tools_and_respects_the_token_cap(ollama_client: ollama.Client) -> None:
    answer = ollama_client.chat(
        model="llama3.2", messages=_say("a b c d"), tools=[WEATHER], options={"num_predict": 2}
    )
    assert (
        answer.message.content == "a b" and answer.done_reason == "length" and not answer.message.tool_calls
    )


def test_say_on_openai_anthropic_and_responses(openai_client: openai.OpenAI, sim: ThreadHandle) -> None:
    chunks = openai_client.chat.completions.create(model="llama3.2", messages=_say(), stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == XSS_TEXT
    parts = [{"role": "user", "content": [{"type": "text", "text": f"!say {XSS}"}]}]
    assert (
        openai_client.chat.completions.create(model="llama3.2", messages=parts).choices[0].message.content
        == XSS_TEXT
    )
    assert openai_client.responses.create(model="llama3.2", input=f"!say {XSS}").output_text == XSS_TEXT
    with anthropic.Anthropic(base_url=sim.url, api_key="unused", max_retries=0) as claude:
        with claude.messages.stream(model="llama3.2", max_tokens=500, messages=_say()) as stream:
            assert stream.get_final_text() == XSS_TEXT


@pytest.mark.parametrize("line", ["say hello", " !say hello", "!sayhello"])
def test_only_a_line_starting_with_say_counts(ollama_client: ollama.Client, line: str) -> None:
    answer = ollama_client.chat(model="llama3.2", messages=[{"role": "user", "content": line}])
    assert "hello" not in answer.message.content and len(answer.message.content.split()) == 5
