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
    ACCOUNT = "account"  # acts with the server owner's ollama.com account: admins and whitelisted IPs only


# Why an admin-only lane refuses everyone else (403).
ADMIN_ONLY = {
    Lane.MANAGE: "model management is for admins and whitelisted IPs only",
    Lane.ACCOUNT: "the server's ollama.com account is for admins and whitelisted IPs only",
}


class Body(StrEnum):
    """What a request carries and how the gateway reads it (proxy_app/bodies.py)."""

    NONE = "none"  # GET/HEAD: nothing is read or forwarded
    JSON = "json"  # one JSON object, required
    OPTIONAL_JSON = "optional_json"  # a JSON object or nothing (POST /api/me, /api/signout)
    MULTIPART = "multipart"  # multipart/form-data with a ``model`` field (transcriptions)
    RAW = "raw"  # streamed through unread (blob uploads)


class Wire(StrEnum):
    """The protocol a path speaks: how it frames streams and shapes errors (proxy_app/dialects.py)."""

    OLLAMA = "ollama"  # NDJSON, errors {"error": "..."}
    OPENAI = "openai"  # SSE ending ``data: [DONE]``
    ANTHROPIC = "anthropic"  # named SSE events, Anthropic's error shape
    RESPONSES = "responses"  # named SSE events, no [DONE]


def wire_of(path: str) -> Wire:
    """The protocol of a request path (``/v1/messages/…`` included: Anthropic clients read its refusals)."""
    for prefix, wire in (("/v1/messages", Wire.ANTHROPIC), ("/v1/responses", Wire.RESPONSES)):
        if path == prefix or path.startswith(prefix + "/"):
            return wire
    return Wire.OPENAI if path == "/v1" or path.startswith("/v1/") else Wire.OLLAMA


class Merge(StrEnum):
    """Fast-lane lists that combine every healthy backend's answer."""

    NONE = ""
    TAGS = "models"  # /api/tags and /api/ps: {"models": [...]} keyed by name
    OPENAI_MODELS = "data"  # /v1/models: {"object": "list", "data": [...]} keyed by id


@dataclass(frozen=True)
class Entry:
    """One row of the table: its lane, the methods it takes, its body and how its answers stream."""

    lane: Lane
    methods: tuple[str, ...]
    streams_by_default: bool = False
    can_stream: bool = False
    merge: Merge = Merge.NONE
    body: Body = Body.JSON  # of a POST/PUT/PATCH/DELETE; GET and HEAD carry none

    def body_of(self, method: str) -> Body:
        """How a ``method`` request to this entry carries its body."""
        return Body.NONE if method in ("GET", "HEAD") else self.body


_GENERATE = Entry(Lane.QUEUED, ("POST",), streams_by_default=True, can_stream=True)
_OPENAI_GENERATE = Entry(Lane.QUEUED, ("POST",), can_stream=True)
_EMBED = Entry(Lane.QUEUED, ("POST",))
_MANAGE_STREAM = Entry(Lane.MANAGE, ("POST",), streams_by_default=True, can_stream=True)
_ACCOUNT = Entry(Lane.ACCOUNT, ("POST",), body=Body.OPTIONAL_JSON)

TABLE: dict[str, Entry] = {
    "/api/generate": _GENERATE,
    "/api/chat": _GENERATE,
    "/api/embed": _EMBED,
    "/api/embeddings": _EMBED,
    "/v1/chat/completions": _OPENAI_GENERATE,
    "/v1/completions": _OPENAI_GENERATE,
    "/v1/embeddings": _EMBED,
    "/v1/messages": _OPENAI_GENERATE,  # Anthropic Messages: streams when asked, named SSE events
    "/v1/responses": _OPENAI_GENERATE,  # OpenAI Responses: likewise, no [DONE]
    "/v1/audio/transcriptions": Entry(Lane.QUEUED, ("POST",), body=Body.MULTIPART),
    "/api/tags": Entry(Lane.FAST, ("GET", "HEAD"), merge=Merge.TAGS),
    "/api/ps": Entry(Lane.FAST, ("GET",), merge=Merge.TAGS),
    "/api/version": Entry(Lane.FAST, ("GET", "HEAD")),
    "/api/status": Entry(Lane.FAST, ("GET",)),
    "/api/experimental/model-recommendations": Entry(Lane.FAST, ("GET",)),
    "/api/show": Entry(Lane.FAST, ("POST",)),
    "/v1/models": Entry(Lane.FAST, ("GET",), merge=Merge.OPENAI_MODELS),
    "/api/pull": _MANAGE_STREAM,
    "/api/push": _MANAGE_STREAM,
    "/api/create": _MANAGE_STREAM,
    "/api/copy": Entry(Lane.MANAGE, ("POST",)),
    "/api/delete": Entry(Lane.MANAGE, ("DELETE",)),
    "/api/me": _ACCOUNT,
    "/api/signout": _ACCOUNT,
    "/api/experimental/web_search": Entry(Lane.ACCOUNT, ("POST",)),
    "/api/experimental/web_fetch": Entry(Lane.ACCOUNT, ("POST",)),
}

ALIAS_PREFIX = "/api/ollama/"

# Paths matched by pattern rather than by name.
BLOB_ENTRY = Entry(Lane.MANAGE, ("HEAD", "POST"), body=Body.RAW)  # /api/blobs/sha256:<64 hex>
MODEL_ENTRY = Entry(Lane.FAST, ("GET",))  # /v1/models/{id}
USER_KEY_ENTRY = Entry(Lane.ACCOUNT, ("DELETE",), body=Body.OPTIONAL_JSON)  # /api/user/keys/{key}

# The endpoints whose requests are inference (a generation, an embedding, a transcription):
# the only requests a user's own usage counts (docs/contract.md §14), never a model list.
INFERENCE_ENDPOINTS: frozenset[str] = frozenset(
    path for path, entry in TABLE.items() if entry.lane is Lane.QUEUED
)
