"""The route table of docs/contract.md §3 as data: which path is queued, fast-laned or admin-only.

Pure data, read by the gateway (``proxy_app.routes.resolve`` matches requests
against it) and by the admin app (the OpenAPI document describes it); neither
imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Lane(StrEnum):
    """How a request is handled."""

    QUEUED = "queued"  # a generation: waits for a slot
    FAST = "fast"  # metadata: never behind a generation
    MANAGE = "manage"  # model management: admins and whitelisted IPs only


class Merge(StrEnum):
    """Fast-lane lists that combine every healthy backend's answer."""

    NONE = ""
    TAGS = "models"  # /api/tags and /api/ps: {"models": [...]} keyed by name
    OPENAI_MODELS = "data"  # /v1/models: {"object": "list", "data": [...]} keyed by id


@dataclass(frozen=True)
class Entry:
    """One row of the table: its lane, the methods it takes and how its answers stream."""

    lane: Lane
    methods: tuple[str, ...]
    streams_by_default: bool = False
    can_stream: bool = False
    merge: Merge = Merge.NONE


_GENERATE = Entry(Lane.QUEUED, ("POST",), streams_by_default=True, can_stream=True)
_OPENAI_GENERATE = Entry(Lane.QUEUED, ("POST",), can_stream=True)
_EMBED = Entry(Lane.QUEUED, ("POST",))
_MANAGE_STREAM = Entry(Lane.MANAGE, ("POST",), streams_by_default=True, can_stream=True)

TABLE: dict[str, Entry] = {
    "/api/generate": _GENERATE,
    "/api/chat": _GENERATE,
    "/api/embed": _EMBED,
    "/api/embeddings": _EMBED,
    "/v1/chat/completions": _OPENAI_GENERATE,
    "/v1/completions": _OPENAI_GENERATE,
    "/v1/embeddings": _EMBED,
    "/api/tags": Entry(Lane.FAST, ("GET", "HEAD"), merge=Merge.TAGS),
    "/api/ps": Entry(Lane.FAST, ("GET",), merge=Merge.TAGS),
    "/api/version": Entry(Lane.FAST, ("GET", "HEAD")),
    "/api/show": Entry(Lane.FAST, ("POST",)),
    "/v1/models": Entry(Lane.FAST, ("GET",), merge=Merge.OPENAI_MODELS),
    "/api/pull": _MANAGE_STREAM,
    "/api/push": _MANAGE_STREAM,
    "/api/create": _MANAGE_STREAM,
    "/api/copy": Entry(Lane.MANAGE, ("POST",)),
    "/api/delete": Entry(Lane.MANAGE, ("DELETE",)),
}

ALIAS_PREFIX = "/api/ollama/"

# Paths matched by pattern rather than by name.
BLOB_ENTRY = Entry(Lane.MANAGE, ("HEAD", "POST"))  # /api/blobs/sha256:<64 hex>
MODEL_ENTRY = Entry(Lane.FAST, ("GET",))  # /v1/models/{id}
