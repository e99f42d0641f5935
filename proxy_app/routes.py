"""The route table of docs/contract.md §3: which path is queued, fast-laned, admin-only or refused.

The table is matched exactly against the decoded request path. Whatever is not
in it — ``/api//pull``, ``/API/PULL``, ``/api/../pull``, ``/v1/../api/pull``,
a trailing slash — is a 404 and never forwarded. The upstream path always
comes from the table entry, never from the client, so the permission checked
and the endpoint reached are the same thing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import quote

from proxy_app.dialects import StreamDialect, dialect_for
from proxy_app.errors import NotFound, ProxyError


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


class Merge(StrEnum):
    """Fast-lane lists that combine every healthy backend's answer."""

    NONE = ""
    TAGS = "models"  # /api/tags and /api/ps: {"models": [...]} keyed by name
    OPENAI_MODELS = "data"  # /v1/models: {"object": "list", "data": [...]} keyed by id


@dataclass(frozen=True)
class Route:
    """One endpoint the gateway serves, resolved from a request."""

    name: str
    method: str
    lane: Lane
    upstream_path: str
    # Whether the response streams when the body does not say "stream": native
    # generations stream unless told not to, OpenAI ones only when asked.
    streams_by_default: bool = False
    can_stream: bool = False
    merge: Merge = Merge.NONE
    model: str | None = None  # a model named in the path (/v1/models/{id})
    body: Body = Body.NONE
    dialect: StreamDialect = dialect_for("/api")

    @property
    def admin_only(self) -> str | None:
        """The 403 message for non-admins if this route is for admins and whitelisted IPs only."""
        return ADMIN_ONLY.get(self.lane)


@dataclass(frozen=True)
class _Entry:
    lane: Lane
    methods: tuple[str, ...]
    streams_by_default: bool = False
    can_stream: bool = False
    merge: Merge = Merge.NONE
    body: Body | None = None  # None: JSON for POST/DELETE, nothing for GET/HEAD


_GENERATE = _Entry(Lane.QUEUED, ("POST",), streams_by_default=True, can_stream=True)
_OPENAI_GENERATE = _Entry(Lane.QUEUED, ("POST",), can_stream=True)
_EMBED = _Entry(Lane.QUEUED, ("POST",))
_MANAGE_STREAM = _Entry(Lane.MANAGE, ("POST",), streams_by_default=True, can_stream=True)
_ACCOUNT = _Entry(Lane.ACCOUNT, ("POST",), body=Body.OPTIONAL_JSON)

TABLE: dict[str, _Entry] = {
    "/api/generate": _GENERATE,
    "/api/chat": _GENERATE,
    "/api/embed": _EMBED,
    "/api/embeddings": _EMBED,
    "/v1/chat/completions": _OPENAI_GENERATE,
    "/v1/completions": _OPENAI_GENERATE,
    "/v1/embeddings": _EMBED,
    "/v1/messages": _OPENAI_GENERATE,  # Anthropic Messages: streams when asked, named SSE events
    "/v1/responses": _OPENAI_GENERATE,  # OpenAI Responses: likewise, no [DONE]
    "/v1/audio/transcriptions": _Entry(Lane.QUEUED, ("POST",), body=Body.MULTIPART),
    "/api/tags": _Entry(Lane.FAST, ("GET", "HEAD"), merge=Merge.TAGS),
    "/api/ps": _Entry(Lane.FAST, ("GET",), merge=Merge.TAGS),
    "/api/version": _Entry(Lane.FAST, ("GET", "HEAD")),
    "/api/status": _Entry(Lane.FAST, ("GET",)),
    "/api/experimental/model-recommendations": _Entry(Lane.FAST, ("GET",)),
    "/api/show": _Entry(Lane.FAST, ("POST",)),
    "/v1/models": _Entry(Lane.FAST, ("GET",), merge=Merge.OPENAI_MODELS),
    "/api/pull": _MANAGE_STREAM,
    "/api/push": _MANAGE_STREAM,
    "/api/create": _MANAGE_STREAM,
    "/api/copy": _Entry(Lane.MANAGE, ("POST",)),
    "/api/delete": _Entry(Lane.MANAGE, ("DELETE",)),
    "/api/me": _ACCOUNT,
    "/api/signout": _ACCOUNT,
    "/api/experimental/web_search": _Entry(Lane.ACCOUNT, ("POST",)),
    "/api/experimental/web_fetch": _Entry(Lane.ACCOUNT, ("POST",)),
}

ALIAS_PREFIX = "/api/ollama/"
# Ollama accepts either separator and hex of either case (docs/contract.md §3).
_BLOB = re.compile(r"/api/blobs/(sha256[:-][0-9a-fA-F]{64})")
# DELETE /api/user/keys/{key}: a public key, base64url-encoded by Ollama's client.
_USER_KEY = re.compile(r"/api/user/keys/([A-Za-z0-9_=-]{1,4096})")
_MODEL_ID = re.compile(r"/v1/models/([A-Za-z0-9][A-Za-z0-9._:/-]{0,199})")


class MethodNotAllowed(ProxyError):
    """The path exists, the method does not (405 with ``Allow``)."""

    def __init__(self, allowed: tuple[str, ...]) -> None:
        super().__init__(405, "method not allowed", {"Allow": ", ".join(allowed)})


def is_gateway_api_path(path: str) -> bool:
    """True for the namespaces the table governs: everything under /api/ and /v1/."""
    return path in ("/api", "/v1") or path.startswith(("/api/", "/v1/"))


def resolve(method: str, path: str) -> Route:
    """The route for ``method path``; :class:`NotFound` or :class:`MethodNotAllowed` otherwise."""
    if path.startswith(ALIAS_PREFIX):
        # The alias kept from the original design: /api/ollama/X is /api/X.
        path = "/api/" + path[len(ALIAS_PREFIX) :]
    entry = TABLE.get(path)
    if entry is not None:
        return _route(method, path, entry, path)
    blob = _BLOB.fullmatch(path)
    if blob:
        entry = _Entry(Lane.MANAGE, ("HEAD", "POST"), body=Body.RAW if method == "POST" else Body.NONE)
        return _route(method, "/api/blobs", entry, "/api/blobs/" + blob.group(1))
    user_key = _USER_KEY.fullmatch(path)
    if user_key:
        entry = _Entry(Lane.ACCOUNT, ("DELETE",), body=Body.OPTIONAL_JSON)
        return _route(method, "/api/user/keys/{key}", entry, "/api/user/keys/" + user_key.group(1))
    model = _MODEL_ID.fullmatch(path)
    if model and _safe_model_id(model.group(1)):
        entry = _Entry(Lane.FAST, ("GET",))
        upstream = "/v1/models/" + quote(model.group(1), safe=":/")
        return _route(method, "/v1/models/{id}", entry, upstream, model=model.group(1))
    raise NotFound()


def _route(method: str, name: str, entry: _Entry, upstream: str, *, model: str | None = None) -> Route:
    if method not in entry.methods:
        raise MethodNotAllowed(entry.methods)
    body = entry.body
    if body is None:
        body = Body.JSON if method in ("POST", "DELETE") else Body.NONE
    return Route(
        name=name,
        method=method,
        lane=entry.lane,
        upstream_path=upstream,
        streams_by_default=entry.streams_by_default,
        can_stream=entry.can_stream,
        merge=entry.merge,
        model=model,
        body=body,
        dialect=dialect_for(name),
    )


def _safe_model_id(model_id: str) -> bool:
    # Model names may hold "/" (hf.co/user/repo:tag) but never empty or dot segments.
    return all(part not in ("", ".", "..") for part in model_id.split("/"))


def wants_stream(route: Route, payload: dict) -> bool:
    """Whether this request's response is a stream, as Ollama and OpenAI decide it."""
    if not route.can_stream:
        return False
    value = payload.get("stream")
    if route.streams_by_default:
        return value is not False  # Ollama streams unless "stream": false
    return value is True
