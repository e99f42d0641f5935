"""Naming a conversation, so its turns go where its prompt is cached (docs/contract.md §12).

``X-Seadragon-Conversation`` when the client sends it; else a digest of the model (normalised), the system
prompt and the first user message (chat routes), or of the model and the prompt's first
2 KiB (generate routes). Every turn of one conversation repeats those, so they name it
without the gateway keeping any history. Other routes (embeddings) have no conversation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from common.policies import normalise_model_name

HEADER = "x-seadragon-conversation"
PROMPT_PREFIX = 2048  # characters of a generate prompt that name its conversation
CHAT_PATHS = frozenset({"/api/chat", "/v1/chat/completions", "/v1/messages"})
GENERATE_PATHS = frozenset({"/api/generate", "/v1/completions"})


def _digest(*parts: Any) -> str:
    text = json.dumps(parts, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _first(messages: list, role: str) -> Any:
    return next((m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == role), None)


def conversation_key(
    path: str, fields: dict, headers: Iterable[tuple[str, str]], model: str | None
) -> str | None:
    """The request's conversation key, or None when it has none."""
    named = next((value for name, value in headers if name.lower() == HEADER), None)
    if model:
        model = normalise_model_name(model)  # one conversation under any spelling of its model
    if named is not None and named.strip():
        return "h:" + _digest(named.strip())
    if path in CHAT_PATHS:
        messages = fields.get("messages")
        if not isinstance(messages, list):
            return None
        system = fields.get("system") if path == "/v1/messages" else _first(messages, "system")
        user = _first(messages, "user")
        return None if user is None else "c:" + _digest(model, system, user)
    if path in GENERATE_PATHS:
        prompt = fields.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            return None
        return "g:" + _digest(model, prompt[:PROMPT_PREFIX])
    return None
