"""Anthropic Messages (``POST /v1/messages``) as Ollama translates it.

Matched against anthropic/anthropic.go (FromMessagesRequest, ToMessagesResponse, StreamConverter,
NewError) and middleware/anthropic.go (AnthropicMessagesMiddleware, writeSSE): named SSE events, no
``ping`` and no ``[DONE]``; a tool call is a ``tool_use`` block whose input arrives as one
``input_json_delta``.
"""

from __future__ import annotations

import os
from typing import Any

from simulator.engine import Plan, make_plan, run_generation
from simulator.exchange import SSE_TYPE, Exchange, HTTPError, dumps, go_json
from simulator.native import require_model, require_object
from simulator.text import last_user_text, message_text, part_text

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens"}  # mapStopReason


def stop_reason(plan: Plan) -> str:
    """Ollama's done_reason in Anthropic's words."""
    return "tool_use" if plan.tool_calls else STOP_REASONS.get(plan.reason, "stop_sequence")


def event(name: str, data: dict[str, Any]) -> bytes:
    """One named SSE event, as writeSSE writes it."""
    return b"event: " + name.encode() + b"\ndata: " + dumps(data) + b"\n\n"


class MessagesEncoder:
    """Anthropic's stream events for one answer, or its one ``message`` object."""

    content_type = SSE_TYPE
    stream_headers = [(b"cache-control", b"no-cache")]

    def __init__(self, plan: Plan) -> None:
        self.id = f"msg_{os.urandom(12).hex()}"
        self.plan = plan
        self.started = False
        self.text_open = False
        self.index = 0

    def _start(self) -> bytes:
        if self.started:
            return b""
        self.started = True
        plan = self.plan
        message = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": plan.model,
            "content": [],
            "usage": {"input_tokens": plan.prompt_tokens, "output_tokens": 0},
        }
        return event("message_start", {"type": "message_start", "message": message})

    def _close_text(self) -> bytes:
        if not self.text_open:
            return b""
        self.text_open = False
        stop = event("content_block_stop", {"type": "content_block_stop", "index": self.index})
        self.index += 1
        return stop

    def token(self, index: int) -> bytes:
        """The ``text_delta`` of token ``index`` (after the message and block starts, for the first)."""
        head = b""
        if not self.text_open:
            head = self._start()
            block = {"type": "text", "text": ""}
            head += event(
                "content_block_start",
                {"type": "content_block_start", "index": self.index, "content_block": block},
            )
            self.text_open = True
        return b"".join(
            (
                head,
                b'event: content_block_delta\ndata: {"type":"content_block_delta","index":',
                str(self.index).encode(),
                b',"delta":{"type":"text_delta","text":',
                self.plan.token(index),
                b"}}\n\n",
            )
        )

    def tool_chunk(self, plan: Plan) -> bytes:
        """A ``tool_use`` block per call: start (empty input), one ``input_json_delta``, stop."""
        parts = [self._start(), self._close_text()]
        for call in plan.tool_calls:
            function = call["function"]
            block = {"type": "tool_use", "id": call["id"], "name": function["name"], "input": {}}
            delta = {"type": "input_json_delta", "partial_json": go_json(function["arguments"])}
            parts += [
                event(
                    "content_block_start",
                    {"type": "content_block_start", "index": self.index, "content_block": block},
                ),
                event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": self.index, "delta": delta},
                ),
                event("content_block_stop", {"type": "content_block_stop", "index": self.index}),
            ]
            self.index += 1
        return b"".join(parts)

    def final(self, plan: Plan) -> bytes:
        """The open block's stop, ``message_delta`` with the stop reason and usage, ``message_stop``."""
        usage = {"input_tokens": plan.prompt_tokens, "output_tokens": plan.eval_count}
        delta = {"type": "message_delta", "delta": {"stop_reason": stop_reason(plan)}, "usage": usage}
        closing = (self._start(), self._close_text(), event("message_delta", delta))
        return b"".join((*closing, event("message_stop", {"type": "message_stop"})))

    def whole(self, plan: Plan) -> dict[str, Any]:
        """The ``message`` object (``content`` is null when the answer is empty, as Go encodes it)."""
        content: list[dict[str, Any]] = []
        if plan.count:
            content.append({"type": "text", "text": plan.text()})
        for call in plan.tool_calls:
            function = call["function"]
            content.append(
                {
                    "type": "tool_use",
                    "id": call["id"],
                    "name": function["name"],
                    "input": function["arguments"],
                }
            )
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": plan.model,
            "content": content or None,
            "stop_reason": stop_reason(plan),
            "usage": {"input_tokens": plan.prompt_tokens, "output_tokens": plan.eval_count},
        }


def _system_text(system: Any) -> str:
    return system if isinstance(system, str) else part_text(system)


def _tools(value: Any) -> list[dict[str, Any]]:
    # Server tools (web_search_*) run Ollama's own search loop, not a client tool call: left out.
    tools = value if isinstance(value, list) else []
    return [
        {"type": "function", "function": {"name": t["name"], "parameters": t.get("input_schema")}}
        for t in tools
        if isinstance(t, dict)
        and isinstance(t.get("name"), str)
        and not str(t.get("type", "")).startswith("web_search")
    ]


def _answered(messages: list[Any]) -> bool:
    """Whether the last message hands back a tool's result (then the model answers in text)."""
    content = messages[-1].get("content") if isinstance(messages[-1], dict) else None
    return isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in content
    )


async def messages(ex: Exchange) -> None:
    """POST /v1/messages"""
    body = require_object(ex)
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise HTTPError(400, "model is required")
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens <= 0:
        raise HTTPError(400, "max_tokens is required and must be positive")
    history = body.get("messages")
    if not isinstance(history, list) or not history:
        raise HTTPError(400, "messages is required")
    model = require_model(ex, body)
    prompt = "\n".join(filter(None, (_system_text(body.get("system")), message_text(history))))
    tools = [] if _answered(history) else _tools(body.get("tools"))
    stream = body.get("stream") is True
    plan = make_plan(ex, model, prompt, stream, max_tokens, last_user=last_user_text(history), tools=tools)
    await run_generation(ex, plan, MessagesEncoder(plan), body.get("keep_alive"))
