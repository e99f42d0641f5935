"""Fake tool calls: a request offering tools gets a call to the first one, arguments fitting its schema.

Tools arrive in Ollama's native shape (``{"type": "function", "function": {"name", "parameters"}}``);
the Anthropic and Responses adapters convert theirs first, as Ollama's middleware does.
"""

from __future__ import annotations

import json
import random
import string
from typing import Any

from simulator.exchange import go_json
from simulator.text import WORDS, count_tokens


def call_id() -> str:
    """A tool-call id as Ollama makes one (``toolCallId`` in server/routes.go): ``call_`` and 8 characters."""
    return "call_" + "".join(random.choices(string.ascii_lowercase + string.digits, k=8))


def _value(schema: Any, seed: int) -> Any:
    kind = schema.get("type") if isinstance(schema, dict) else None
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if isinstance(schema, dict) and isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][seed % len(schema["enum"])]
    if kind == "integer":
        return seed % 10 + 1
    if kind == "number":
        return (seed % 100) / 4
    if kind == "boolean":
        return True
    if kind == "array":
        return [_value(schema.get("items"), seed)]
    if kind == "object":
        return arguments(schema, seed)
    return WORDS[seed % len(WORDS)]


def arguments(parameters: Any, seed: int) -> dict[str, Any]:
    """Arguments for a JSON schema: every required property (all of them when none is required)."""
    if not isinstance(parameters, dict):
        return {}
    properties = parameters.get("properties")
    if not isinstance(properties, dict):
        return {}
    required = parameters.get("required")
    names = (
        [n for n in required if n in properties]
        if isinstance(required, list) and required
        else list(properties)
    )
    return {name: _value(properties[name], seed + index) for index, name in enumerate(names)}


def native_tools(value: Any) -> list[dict[str, Any]]:
    """The function tools of a native or OpenAI chat request."""
    if not isinstance(value, list):
        return []
    return [t for t in value if isinstance(t, dict) and isinstance(t.get("function"), dict)]


def tool_calls_for(tools: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """The native ``message.tool_calls`` of an answer to a request offering ``tools`` (empty: none)."""
    if not tools:
        return []
    function = tools[0]["function"]
    name = function.get("name") if isinstance(function.get("name"), str) else "tool"
    args = arguments(function.get("parameters"), seed)
    return [{"id": call_id(), "function": {"index": 0, "name": name, "arguments": args}}]


def call_tokens(calls: list[dict[str, Any]]) -> int:
    """How many tokens the calls' names and arguments take (counted into ``eval_count``)."""
    return sum(count_tokens(c["function"]["name"] + json.dumps(c["function"]["arguments"])) for c in calls)


def openai_tool_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Native calls in OpenAI's shape (``ToToolCalls`` in openai/openai.go): arguments as a JSON string."""
    return [
        {
            "id": c["id"],
            "index": c["function"]["index"],
            "type": "function",
            "function": {"name": c["function"]["name"], "arguments": go_json(c["function"]["arguments"])},
        }
        for c in calls
    ]
