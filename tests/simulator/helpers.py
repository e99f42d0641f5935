"""Request bodies and parsers shared by the simulator tests."""

from __future__ import annotations

import json
from typing import Any

QUESTION = [{"role": "user", "content": "Why is the sea blue?"}]


def chat_body(model: str = "llama3.2", **extra: Any) -> dict[str, Any]:
    """A minimal /api/chat (or /v1/chat/completions) request."""
    return {"model": model, "messages": QUESTION, **extra}


def ndjson(text: str) -> list[dict[str, Any]]:
    """The objects of an NDJSON body."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def sse_data(text: str) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order."""
    events = [event for event in text.split("\n\n") if event.strip()]
    assert all(event.startswith("data: ") for event in events), events
    return [event[len("data: ") :] for event in events]


def named_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """The (event, data) pairs of a named-event SSE body (Anthropic, Responses)."""
    pairs = []
    for block in filter(str.strip, text.split("\n\n")):
        name_line, data_line = block.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: "), block
        pairs.append((name_line[len("event: ") :], json.loads(data_line[len("data: ") :])))
    return pairs
