"""Ollama's native inference API (/api/chat, generate, embed, embeddings) with fake tokens."""

from __future__ import annotations

import time
from typing import Any

from simulator.engine import Plan, make_plan, run_generation, slot
from simulator.exchange import NDJSON_TYPE, Exchange, HTTPError, dumps
from simulator.text import (
    answer_text,
    context_ids,
    count_tokens,
    embedding,
    message_text,
    rfc3339,
    token_json,
)


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
        self.seed = plan.seed
        self.head = b'{"model":' + dumps(plan.model) + b',"created_at":"'

    def token(self, index: int) -> bytes:
        """One ``message`` chunk."""
        return b"".join(
            (
                self.head,
                rfc3339().encode(),
                b'","message":{"role":"assistant","content":',
                token_json(self.seed, index),
                b'},"done":false}\n',
            )
        )

    def _done(self, plan: Plan, content: str) -> dict[str, Any]:
        return {
            "model": plan.model,
            "created_at": rfc3339(),
            "message": {"role": "assistant", "content": content},
            "done_reason": plan.reason,
            "done": True,
            **plan.timings,
        }

    def final(self, plan: Plan) -> bytes:
        """The ``done`` chunk with the statistics."""
        return dumps(self._done(plan, "")) + b"\n"

    def whole(self, plan: Plan) -> dict[str, Any]:
        """The ``stream:false`` answer."""
        return self._done(plan, answer_text(plan.seed, plan.count))


class GenerateEncoder(ChatEncoder):
    """/api/generate as NDJSON."""

    def token(self, index: int) -> bytes:
        """One ``response`` chunk."""
        return b"".join(
            (
                self.head,
                rfc3339().encode(),
                b'","response":',
                token_json(self.seed, index),
                b',"done":false}\n',
            )
        )

    def _done(self, plan: Plan, content: str) -> dict[str, Any]:
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
    ex.state.mark_loaded(model, 0 if unload else 300)
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
    plan = make_plan(ex, model, message_text(messages), body.get("stream") is not False, num_predict(body))
    await run_generation(ex, plan, ChatEncoder(plan))


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
    plan = make_plan(ex, model, text, body.get("stream") is not False, num_predict(body))
    await run_generation(ex, plan, GenerateEncoder(plan))


def embed_texts(value: Any) -> list[str]:
    """The texts of an embedding request's ``input`` (a string or a list of strings)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise HTTPError(400, "invalid input type")


async def embed_vectors(ex: Exchange, model: str, texts: list[str], dim: Any) -> list[list[float]]:
    """Compute embeddings inside a slot, after the first-token delay, honouring mid faults."""
    size = dim if isinstance(dim, int) and not isinstance(dim, bool) and dim > 0 else ex.config.embedding_dim
    ex.watch()
    async with slot(ex):
        ex.state.mark_loaded(model)
        await ex.pause(ex.header_number("x-sim-first-token-delay", ex.config.first_token_delay))
        await ex.mid_fault()
        return [embedding(text, size) for text in texts]


async def embed(ex: Exchange) -> None:
    """POST /api/embed"""
    started = time.monotonic_ns()
    body = require_object(ex)
    model = require_model(ex, body)
    texts = embed_texts(body.get("input"))
    vectors = await embed_vectors(ex, model, texts, body.get("dimensions"))
    total = max(1, time.monotonic_ns() - started)
    await ex.json(
        {
            "model": model,
            "embeddings": vectors,
            "total_duration": total,
            "load_duration": max(1, total // 10),
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
    vectors = await embed_vectors(ex, model, [prompt] if prompt else [], None)
    await ex.json({"embedding": vectors[0] if vectors else []})
