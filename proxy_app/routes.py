"""Resolving a request against the route table of docs/contract.md §3 (the data: ``common.routes``).

The table is matched exactly against the decoded request path. Whatever is not
in it — ``/api//pull``, ``/API/PULL``, ``/api/../pull``, ``/v1/../api/pull``,
a trailing slash — is a 404 and never forwarded. The upstream path always
comes from the table entry, never from the client, so the permission checked
and the endpoint reached are the same thing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from common.routes import (
    ADMIN_ONLY,
    ALIAS_PREFIX,
    BLOB_ENTRY,
    MODEL_ENTRY,
    TABLE,
    USER_KEY_ENTRY,
    Body,
    Entry,
    Lane,
    Merge,
)
from proxy_app.dialects import NDJSON, StreamDialect, dialect_for
from proxy_app.errors import MethodNotAllowed, NotFound


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
    dialect: StreamDialect = NDJSON

    @property
    def admin_only(self) -> str | None:
        """The 403 message for non-admins if this route is for admins and whitelisted IPs only."""
        return ADMIN_ONLY.get(self.lane)


# Ollama accepts either separator and hex of either case (docs/contract.md §3).
_BLOB = re.compile(r"/api/blobs/(sha256[:-][0-9a-fA-F]{64})")
# DELETE /api/user/keys/{key}: a public key, base64url-encoded by Ollama's client.
_USER_KEY = re.compile(r"/api/user/keys/([A-Za-z0-9_=-]{1,4096})")
_MODEL_ID = re.compile(r"/v1/models/([A-Za-z0-9][A-Za-z0-9._:/-]{0,199})")


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
        return _route(method, "/api/blobs", BLOB_ENTRY, "/api/blobs/" + blob.group(1))
    user_key = _USER_KEY.fullmatch(path)
    if user_key:
        upstream = "/api/user/keys/" + user_key.group(1)
        return _route(method, "/api/user/keys/{key}", USER_KEY_ENTRY, upstream)
    model = _MODEL_ID.fullmatch(path)
    if model and _safe_model_id(model.group(1)):
        upstream = "/v1/models/" + quote(model.group(1), safe=":/")
        return _route(method, "/v1/models/{id}", MODEL_ENTRY, upstream, model=model.group(1))
    raise NotFound()


def _route(method: str, name: str, entry: Entry, upstream: str, *, model: str | None = None) -> Route:
    if method not in entry.methods:
        raise MethodNotAllowed(entry.methods)
    return Route(
        name=name,
        method=method,
        lane=entry.lane,
        upstream_path=upstream,
        streams_by_default=entry.streams_by_default,
        can_stream=entry.can_stream,
        merge=entry.merge,
        model=model,
        body=entry.body_of(method),
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
