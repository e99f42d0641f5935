"""OpenAI Responses (``POST /v1/responses``) as Ollama translates it.

Matched against openai/responses.go (FromResponsesRequest, ToResponse, ResponsesStreamConverter) and
middleware/openai.go (ResponsesMiddleware, ResponsesWriter): named SSE events with a
``sequence_number``, keys sorted as Go marshals maps, no ``[DONE]``; function calls as whole items.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

from simulator.engine import Plan, make_plan, run_generation
from simulator.exchange import SSE_TYPE, Exchange, HTTPError, go_json
from simulator.native import require_model, require_object
from simulator.text import last_user_text, message_text
from simulator.tools import openai_tool_calls


def _sorted_json(data: Any) -> bytes:
    # The stream converter builds map[string]any values, which Go marshals with sorted keys.
    return go_json(json.loads(json.dumps(data, sort_keys=True))).encode()


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(item_id: str, status: str, text: str | None) -> dict[str, Any]:
    content = [] if text is None else [_text_part(text)]
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def usage(plan: Plan) -> dict[str, Any]:
    """The Responses API's token accounting."""
    return {
        "input_tokens": plan.prompt_tokens,
        "output_tokens": plan.eval_count,
        "total_tokens": plan.prompt_tokens + plan.eval_count,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }


class ResponsesEncoder:
    """The Responses stream events of one answer, or its one ``response`` object."""

    content_type = SSE_TYPE

    def __init__(self, plan: Plan, request: dict[str, Any]) -> None:
        self.plan = plan
        self.request = request
        self.id = f"resp_{random.randrange(999999)}"
        self.item_id = f"msg_{random.randrange(999999)}"
        self.sequence = 0
        self.started = False
        self.text_open = False
        self.items: list[dict[str, Any]] = []

    def _event(self, name: str, data: dict[str, Any]) -> bytes:
        data.update(type=name, sequence_number=self.sequence)
        self.sequence += 1
        return b"event: " + name.encode() + b"\ndata: " + _sorted_json(data) + b"\n\n"

    def response(self, status: str, output: list[Any], usage: Any, completed: int | None) -> dict[str, Any]:
        """The ``response`` object: the request's settings echoed back, as ToResponse does."""
        req = self.request
        text_format = (req.get("text") or {}).get("format") if isinstance(req.get("text"), dict) else None
        reasoning = (
            req.get("reasoning") if isinstance(req.get("reasoning"), dict) and req["reasoning"] else None
        )
        return {
            "id": self.id,
            "object": "response",
            "created_at": int(time.time()),
            "completed_at": completed,
            "status": status,
            "incomplete_details": None,
            "model": req["model"],
            "previous_response_id": None,
            "instructions": req.get("instructions") or None,
            "output": output,
            "error": None,
            "tools": req.get("tools") or [],
            "tool_choice": "auto",
            "truncation": req.get("truncation") or "disabled",
            "parallel_tool_calls": True,
            "text": {"format": text_format or {"type": "text"}},
            "top_p": req.get("top_p") if req.get("top_p") is not None else 1.0,
            "presence_penalty": 0,
            "frequency_penalty": 0,
            "top_logprobs": 0,
            "temperature": req.get("temperature") if req.get("temperature") is not None else 1.0,
            "reasoning": reasoning,
            "usage": usage,
            "max_output_tokens": req.get("max_output_tokens"),
            "max_tool_calls": None,
            "store": False,
            "background": req.get("background") is True,
            "service_tier": "default",
            "metadata": {},
            "safety_identifier": None,
            "prompt_cache_key": None,
        }

    def _start(self) -> bytes:
        if self.started:
            return b""
        self.started = True
        return b"".join(
            self._event(name, {"response": self.response("in_progress", [], None, None)})
            for name in ("response.created", "response.in_progress")
        )

    def token(self, index: int) -> bytes:
        """One ``response.output_text.delta`` (after the item and part are opened, for the first)."""
        head = self._start()
        if not self.text_open:
            self.text_open = True
            item = _message_item(self.item_id, "in_progress", None)
            head += self._event("response.output_item.added", {"output_index": 0, "item": item})
            part = {"item_id": self.item_id, "output_index": 0, "content_index": 0, "part": _text_part("")}
            head += self._event("response.content_part.added", part)
        sequence = self.sequence
        self.sequence += 1
        return b"".join(
            (
                head,
                b'event: response.output_text.delta\ndata: {"content_index":0,"delta":',
                self.plan.token(index),
                b',"item_id":"',
                self.item_id.encode(),
                b'","logprobs":[],"output_index":0,"sequence_number":',
                str(sequence).encode(),
                b',"type":"response.output_text.delta"}\n\n',
            )
        )

    def tool_chunk(self, plan: Plan) -> bytes:
        """Per call: ``output_item.added``, the arguments' delta and done, ``output_item.done``."""
        parts = [self._start()]
        for index, call in enumerate(openai_tool_calls(plan.tool_calls)):
            item_id = f"fc_{random.randrange(999999)}_{index}"
            function = call["function"]
            item = {"id": item_id, "type": "function_call", "call_id": call["id"], "name": function["name"]}
            done = {**item, "status": "completed", "arguments": function["arguments"]}
            self.items.append(done)
            where = {"item_id": item_id, "output_index": index}
            parts += [
                self._event(
                    "response.output_item.added",
                    {"output_index": index, "item": {**item, "status": "in_progress", "arguments": ""}},
                ),
                self._event(
                    "response.function_call_arguments.delta", {**where, "delta": function["arguments"]}
                ),
                self._event(
                    "response.function_call_arguments.done", {**where, "arguments": function["arguments"]}
                ),
                self._event("response.output_item.done", {"output_index": index, "item": done}),
            ]
        return b"".join(parts)

    def final(self, plan: Plan) -> bytes:
        """The text's done events, then ``response.completed`` with the output and usage."""
        parts = [self._start()]
        if self.text_open:
            text = plan.text()
            where = {"item_id": self.item_id, "output_index": 0, "content_index": 0}
            item = _message_item(self.item_id, "completed", text)
            self.items.append(item)
            parts += [
                self._event("response.output_text.done", {**where, "text": text, "logprobs": []}),
                self._event("response.content_part.done", {**where, "part": _text_part(text)}),
                self._event("response.output_item.done", {"output_index": 0, "item": item}),
            ]
        response = self.response("completed", self.items, usage(plan), int(time.time()))
        parts.append(self._event("response.completed", {"response": response}))
        return b"".join(parts)

    def whole(self, plan: Plan) -> dict[str, Any]:
        """The ``response`` object of a ``stream:false`` request."""
        output: list[dict[str, Any]] = []
        for index, call in enumerate(openai_tool_calls(plan.tool_calls)):
            function = call["function"]
            output.append(
                {
                    "id": f"fc_{self.id}_{index}",
                    "type": "function_call",
                    "status": "completed",
                    "call_id": call["id"],
                    "name": function["name"],
                    "arguments": function["arguments"],
                }
            )
        if not output:
            output.append(_message_item(self.item_id, "completed", plan.text()))
        return self.response("completed", output, usage(plan), int(time.time()))


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's ``instructions`` and ``input`` as chat messages (text only)."""
    messages: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        messages.append({"role": "system", "content": body["instructions"]})
    value = body.get("input")
    if isinstance(value, str):
        return [*messages, {"role": "user", "content": value}]
    if not isinstance(value, list):
        raise HTTPError(400, "input must be a string or an array of input items")
    for item in value:
        if not isinstance(item, dict):
            raise HTTPError(400, "input items must be objects")
        kind = item.get("type", "message")
        if kind == "message":
            messages.append({"role": item.get("role"), "content": item.get("content")})
        elif kind == "function_call_output":
            messages.append({"role": "tool", "content": item.get("output")})
    return messages


def _tools(value: Any) -> list[dict[str, Any]]:
    tools = value if isinstance(value, list) else []
    return [
        {"type": "function", "function": {"name": t["name"], "parameters": t.get("parameters")}}
        for t in tools
        if isinstance(t, dict) and t.get("type") == "function" and isinstance(t.get("name"), str)
    ]


async def create(ex: Exchange) -> None:
    """POST /v1/responses"""
    body = require_object(ex)
    model = require_model(ex, body)
    messages = _messages(body)
    answered = bool(messages) and messages[-1]["role"] == "tool"
    tools = [] if answered else _tools(body.get("tools"))
    stream = body.get("stream") is True
    cap = body.get("max_output_tokens")
    plan = make_plan(
        ex, model, message_text(messages), stream, cap, last_user=last_user_text(messages), tools=tools
    )
    await run_generation(ex, plan, ResponsesEncoder(plan, body))
