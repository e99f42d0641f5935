"""Ollama's OpenAI compatibility layer (/v1/*): SSE streams, OpenAI objects and errors."""

from __future__ import annotations

import base64
import random
import struct
import time
from typing import Any

from simulator.engine import Plan, make_plan, run_generation
from simulator.exchange import SSE_TYPE, Exchange, HTTPError, dumps
from simulator.native import chat_plan, embed_vectors, require_model, require_object
from simulator.text import count_tokens, normalize_model
from simulator.tools import native_tools, openai_tool_calls

FINGERPRINT = "fp_ollama"
DONE = b"data: [DONE]\n\n"


def _cap(body: dict[str, Any]) -> Any:
    cap = body.get("max_completion_tokens")
    return body.get("max_tokens") if cap is None else cap


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def usage(plan: Plan) -> dict[str, int]:
    """OpenAI's token accounting."""
    total = plan.prompt_tokens + plan.eval_count
    return {"prompt_tokens": plan.prompt_tokens, "completion_tokens": plan.eval_count, "total_tokens": total}


class ChatCompletionEncoder:
    """/v1/chat/completions: ``chat.completion.chunk`` events, or one ``chat.completion``."""

    content_type = SSE_TYPE
    prefix = "chatcmpl"
    chunk_object = "chat.completion.chunk"
    # A token's JSON literal goes between a head and the tail; only the first delta names the role.
    first_head = b',"choices":[{"index":0,"delta":{"role":"assistant","content":'
    choice_head = b',"choices":[{"index":0,"delta":{"content":'
    choice_tail = b'},"finish_reason":null}]}\n\n'
    opens_with_role = True  # a chat stream with no token at all still opens with a role chunk

    def __init__(self, plan: Plan, include_usage: bool) -> None:
        self.token_literal = plan.token
        self.include_usage = include_usage
        self.base = {
            "id": f"{self.prefix}-{random.randint(0, 999)}",
            "object": self.chunk_object,
            "created": int(time.time()),
            "model": plan.model,
            "system_fingerprint": FINGERPRINT,
        }
        # Everything up to the token's JSON literal, built once per request.
        self.head = b"data: " + dumps(self.base)[:-1] + self.choice_head
        self.role_sent = False

    def token(self, index: int) -> bytes:
        """One SSE event carrying token ``index``."""
        if self.role_sent:
            return self.head + self.token_literal(index) + self.choice_tail
        self.role_sent = True
        return (
            b"data: " + dumps(self.base)[:-1] + self.first_head + self.token_literal(index) + self.choice_tail
        )

    def tool_chunk(self, plan: Plan) -> bytes:
        """The delta carrying the tool calls, whole (``ToStreamChunks`` in openai/openai.go)."""
        delta: dict[str, Any] = {} if self.role_sent else {"role": "assistant"}
        self.role_sent = True
        delta.update(content="", tool_calls=openai_tool_calls(plan.tool_calls))
        choice = {"index": 0, "delta": delta, "finish_reason": None}
        return b"data: " + dumps({**self.base, "choices": [choice]}) + b"\n\n"

    def _reason(self, plan: Plan) -> str:
        return "tool_calls" if plan.tool_calls and plan.reason == "stop" else plan.reason

    def _last_choice(self, plan: Plan) -> dict[str, Any]:
        # FinishChunk in openai/openai.go: the finish reason alone, with an empty delta.
        return {"index": 0, "delta": {}, "finish_reason": self._reason(plan)}

    def final(self, plan: Plan) -> bytes:
        """The finishing event, the usage event when asked for, and ``[DONE]``."""
        events = []
        if self.opens_with_role and not self.role_sent:
            opening = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
            events.append(b"data: " + dumps({**self.base, "choices": [opening]}) + b"\n\n")
        events.append(b"data: " + dumps({**self.base, "choices": [self._last_choice(plan)]}) + b"\n\n")
        if self.include_usage:
            events.append(b"data: " + dumps({**self.base, "choices": [], "usage": usage(plan)}) + b"\n\n")
        events.append(DONE)
        return b"".join(events)

    def whole(self, plan: Plan) -> dict[str, Any]:
        """The ``stream:false`` answer."""
        message: dict[str, Any] = {"role": "assistant", "content": plan.text()}
        if plan.tool_calls:
            message["tool_calls"] = openai_tool_calls(plan.tool_calls)
        choice = {"index": 0, "message": message, "finish_reason": self._reason(plan)}
        return {**self.base, "object": "chat.completion", "choices": [choice], "usage": usage(plan)}


class CompletionEncoder(ChatCompletionEncoder):
    """/v1/completions: ``text_completion`` events and objects."""

    prefix = "cmpl"
    chunk_object = "text_completion"
    first_head = choice_head = b',"choices":[{"index":0,"text":'
    opens_with_role = False
    choice_tail = b',"finish_reason":null}]}\n\n'

    def _last_choice(self, plan: Plan) -> dict[str, Any]:
        return {"index": 0, "text": "", "finish_reason": plan.reason}

    def whole(self, plan: Plan) -> dict[str, Any]:
        """The ``stream:false`` answer."""
        text = plan.text()
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": plan.reason}
        return {**self.base, "choices": [choice], "usage": usage(plan)}


async def chat_completions(ex: Exchange) -> None:
    """POST /v1/chat/completions"""
    body = require_object(ex)
    model = require_model(ex, body)
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise HTTPError(400, "messages is required and must be a list")
    plan = chat_plan(
        ex, model, messages, native_tools(body.get("tools")), body.get("stream") is True, _cap(body)
    )
    await run_generation(ex, plan, ChatCompletionEncoder(plan, _include_usage(body)))


async def completions(ex: Exchange) -> None:
    """POST /v1/completions"""
    body = require_object(ex)
    model = require_model(ex, body)
    prompt = body.get("prompt", "")
    if isinstance(prompt, list):
        prompt = "\n".join(str(part) for part in prompt)
    if not isinstance(prompt, str):
        raise HTTPError(400, "prompt must be a string")
    plan = make_plan(ex, model, prompt, body.get("stream") is True, _cap(body), last_user=prompt)
    await run_generation(ex, plan, CompletionEncoder(plan, _include_usage(body)))


def _inputs(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(item, int) for item in value):
        return [" ".join(map(str, value))]  # one pre-tokenised input
    if isinstance(value, list) and value:
        return [item if isinstance(item, str) else " ".join(map(str, item)) for item in value]
    raise HTTPError(400, "invalid input type: expected a string or a non-empty list")


async def embeddings(ex: Exchange) -> None:
    """POST /v1/embeddings (``encoding_format: base64`` gives little-endian float32, as OpenAI does)."""
    body = require_object(ex)
    model = require_model(ex, body)
    texts = _inputs(body.get("input"))
    vectors = await embed_vectors(ex, model, texts, body.get("dimensions"))
    as_base64 = body.get("encoding_format") == "base64"
    data = [
        {
            "object": "embedding",
            "embedding": base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() if as_base64 else v,
            "index": index,
        }
        for index, v in enumerate(vectors)
    ]
    tokens = sum(count_tokens(text) for text in texts)
    await ex.json(
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


def _model_object(name: str, modified_ns: int) -> dict[str, Any]:
    owner = name.rsplit("/", 1)[0] if "/" in name else "library"
    return {"id": name, "object": "model", "created": modified_ns // 1_000_000_000, "owned_by": owner}


async def models(ex: Exchange) -> None:
    """GET /v1/models"""
    data = [_model_object(name, ns) for name, ns in ex.state.models.items()]
    await ex.json({"object": "list", "data": data})


async def model(ex: Exchange) -> None:
    """GET /v1/models/{id}"""
    name = ex.path[len("/v1/models/") :]
    key = normalize_model(name)
    if key not in ex.state.models:
        raise HTTPError(404, f'model "{name}" not found')
    await ex.json(_model_object(name, ex.state.models[key]))
