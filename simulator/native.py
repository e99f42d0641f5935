"""Ollama's native inference API (/api/chat, generate, embed, embeddings) with fake tokens."""

from __future__ import annotations

import time
from typing import Any

from simulator import vram
from simulator.engine import Plan, make_plan, run_generation, slot
from simulator.exchange import NDJSON_TYPE, Exchange, HTTPError, dumps
from simulator.text import context_ids, count_tokens, embedding, last_user_text, message_text, rfc3339
from simulator.tools import native_tools


def require_object(ex: Exchange) -> dict[str, Any]:
    """The request body as a JSON object, or 400 in Ollama's words."""
    if ex.payload is None:
        raise HTTPError(400, ex.payload_error or "missing request body")
    if not isinstance(ex.payload, dict):
        raise HTTPError(400, "json: cannot unmarshal request body into a JSON object")
    return ex.payload


def require_model(ex: Exchange, body: dict[str, Any], *, installed: bool = True) -> str:
    """The request's model name: 400 when missing, 404 (Ollama's wording) when not installed."""
    model = body.get("model") or body.get("name")
    if not isinstance(model, str) or not model.strip():
        raise HTTPError(400, "model is required")
    if installed and not ex.state.has_model(model):
        raise HTTPError(404, f'model "{model}" not found, try pulling it first')
    return model


def num_predict(body: dict[str, Any]) -> Any:
    """``options.num_predict``, the request's token cap (None when absent)."""
    options = body.get("options")
    return options.get("num_predict") if isinstance(options, dict) else None


class ChatEncoder:
    """/api/chat as NDJSON."""

    content_type = NDJSON_TYPE

    def __init__(self, plan: Plan) -> None:
        self.token_literal = plan.token
        self.head = b'{"model":' + dumps(plan.model) + b',"created_at":"'

    def token(self, index: int) -> bytes:
        """One ``message`` chunk."""
        return b"".join(
            (
                self.head,
                rfc3339().encode(),
                b'","message":{"role":"assistant","content":',
                self.token_literal(index),
                b'},"done":false}\n',
            )
        )

    def _done(self, plan: Plan, content: str, calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = calls
        return {
            "model": plan.model,
            "created_at": rfc3339(),
            "message": message,
            "done_reason": plan.reason,
            "done": True,
            **plan.timings,
        }

    def tool_chunk(self, plan: Plan) -> bytes:
        """The chunk carrying the tool calls (Ollama sends them whole, with empty content)."""
        message = {"role": "assistant", "content": "", "tool_calls": plan.tool_calls}
        return (
            dumps({"model": plan.model, "created_at": rfc3339(), "message": message, "done": False}) + b"\n"
        )

    def final(self, plan: Plan) -> bytes:
        """The ``done`` chunk with the statistics."""
        return dumps(self._done(plan, "")) + b"\n"

    def whole(self, plan: Plan) -> dict[str, Any]:
        """The ``stream:false`` answer."""
        return self._done(plan, plan.text(), plan.tool_calls)


class GenerateEncoder(ChatEncoder):
    """/api/generate as NDJSON."""

    def token(self, index: int) -> bytes:
        """One ``response`` chunk."""
        return b"".join(
            (
                self.head,
                rfc3339().encode(),
                b'","response":',
                self.token_literal(index),
                b',"done":false}\n',
            )
        )

    def _done(self, plan: Plan, content: str, calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        return {
            "model": plan.model,
            "created_at": rfc3339(),
            "response": content,
            "done": True,
            "done_reason": plan.reason,
            "context": context_ids(plan.seed, plan.prompt_tokens + plan.count),
            **plan.timings,
        }


async def _load_only(ex: Exchange, model: str, field: str, body: dict[str, Any]) -> None:
    # Ollama answers an empty chat or prompt by loading (or, with keep_alive 0, unloading) the model.
    unload = body.get("keep_alive") in (0, "0", "0s")
    content: dict[str, Any] = {"role": "assistant", "content": ""} if field == "message" else ""
    reason = "unload" if unload else "load"
    if unload:
        ex.state.vram.unload(model)
    else:
        async with vram.use(ex, model, body.get("keep_alive"), body.get("options")):
            pass
    answer = {"model": model, "created_at": rfc3339(), field: content, "done_reason": reason, "done": True}
    await ex.json(answer)


async def chat(ex: Exchange) -> None:
    """POST /api/chat"""
    body = require_object(ex)
    model = require_model(ex, body)
    messages = body.get("messages")
    if messages is not None and not isinstance(messages, list):
        raise HTTPError(400, "messages must be a list")
    if not messages:
        await _load_only(ex, model, "message", body)
        return
    stream = body.get("stream") is not False
    plan = chat_plan(ex, model, messages, native_tools(body.get("tools")), stream, num_predict(body))
    plan.options = body.get("options")
    await run_generation(ex, plan, ChatEncoder(plan), body.get("keep_alive"))


def chat_plan(
    ex: Exchange, model: str, messages: list[Any], tools: list[Any], stream: bool, cap: Any
) -> Plan:
    """A chat plan (native or OpenAI shape); no tool call once the last message is a tool result."""
    last = messages[-1] if messages else None
    answered = isinstance(last, dict) and last.get("role") == "tool"
    text = message_text(messages)
    return make_plan(
        ex, model, text, stream, cap, last_user=last_user_text(messages), tools=[] if answered else tools
    )


async def generate(ex: Exchange) -> None:
    """POST /api/generate"""
    body = require_object(ex)
    model = require_model(ex, body)
    prompt = body.get("prompt") or ""
    if not isinstance(prompt, str):
        raise HTTPError(400, "prompt must be a string")
    if not prompt and not body.get("images"):
        await _load_only(ex, model, "response", body)
        return
    text = f"{body.get('system') or ''}\n{prompt}"
    plan = make_plan(ex, model, text, body.get("stream") is not False, num_predict(body), last_user=prompt)
    plan.options = body.get("options")
    await run_generation(ex, plan, GenerateEncoder(plan), body.get("keep_alive"))


def embed_texts(value: Any) -> list[str]:
    """The texts of an embedding request's ``input`` (a string or a list of strings)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise HTTPError(400, "invalid input type")


async def embed_vectors(
    ex: Exchange, model: str, texts: list[str], dim: Any, body: dict[str, Any] | None = None
) -> list[list[float]]:
    """Compute embeddings inside a slot, after the first-token delay, honouring mid faults."""
    size = dim if isinstance(dim, int) and not isinstance(dim, bool) and dim > 0 else ex.config.embedding_dim
    body = body or {}
    ex.watch()
    async with slot(ex), vram.use(ex, model, body.get("keep_alive"), body.get("options")):
        await ex.pause(ex.header_number("x-sim-first-token-delay", ex.config.first_token_delay))
        await ex.mid_fault()
        return [embedding(text, size) for text in texts]


async def embed(ex: Exchange) -> None:
    """POST /api/embed"""
    started = time.monotonic_ns()
    body = require_object(ex)
    model = require_model(ex, body)
    texts = embed_texts(body.get("input"))
    vectors = await embed_vectors(ex, model, texts, body.get("dimensions"), body)
    total = max(1, time.monotonic_ns() - started)
    await ex.json(
        {
            "model": model,
            "embeddings": vectors,
            "total_duration": total,
            "load_duration": max(1, ex.load_ns),
            "prompt_eval_count": sum(count_tokens(text) for text in texts),
        }
    )


async def embeddings(ex: Exchange) -> None:
    """POST /api/embeddings (the legacy single-vector endpoint)."""
    body = require_object(ex)
    model = require_model(ex, body)
    prompt = body.get("prompt") or ""
    if not isinstance(prompt, str):
        raise HTTPError(400, "prompt must be a string")
    vectors = await embed_vectors(ex, model, [prompt] if prompt else [], None, body)
    await ex.json({"embedding": vectors[0] if vectors else []})
