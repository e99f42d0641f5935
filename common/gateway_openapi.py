"""The gateway's half of ``/openapi.json``, generated from the route table in :mod:`common.routes`.

Paths under ``/api/`` and ``/v1/`` come from :data:`common.routes.TABLE` and its pattern entries
(blobs, one model), so a route added there is documented at once; the gateway's own routes
(``/``, ``/health``, ``/ready``, ``/metrics``, ``/api/admin/stats``, the web chat's
``/chat/api/reply``) are listed in :data:`OWN_ROUTES`, the live queue's in :data:`QUEUE_ROUTES`
(tests/proxy/test_docs_data.py holds them to the gateway's URL map and view docstrings). The admin app
serves the whole document (see ``admin_app/docs.py``) without importing the gateway.

Longer than 300 lines because it is mostly data (summaries, parameters and shapes of each gateway
route); the code that turns the route table into paths is short and reads best beside that data.
"""

from __future__ import annotations

import re
from typing import Any

from common.routes import (
    ALIAS_PREFIX,
    BLOB_ENTRY,
    MODEL_ENTRY,
    TABLE,
    USER_KEY_ENTRY,
    Body,
    Entry,
    Lane,
    Wire,
    wire_of,
)

# Path templates the table matches by pattern, each with a concrete path the gateway accepts.
PATTERNS = {
    "/api/blobs/{digest}": "/api/blobs/sha256:" + "0" * 64,
    "/v1/models/{id}": "/v1/models/llama3.2:latest",
    "/api/user/keys/{key}": "/api/user/keys/c3NoLWVkMjU1MTk",
}
PATTERN_ENTRIES = {
    "/api/blobs/{digest}": BLOB_ENTRY,
    "/v1/models/{id}": MODEL_ENTRY,
    "/api/user/keys/{key}": USER_KEY_ENTRY,
}
# The gateway's routes besides the proxied surface: path -> (method, endpoint, summary).
OWN_ROUTES = {
    "/": (
        "GET",
        "gateway.index",
        "Who answers here; a browser is sent on to the chat or the login page (§9)",
    ),
    "/health": (
        "GET",
        "monitor.health",
        "200 while the process lives: ``ok`` when every backend is up, else ``degraded``",
    ),
    "/ready": (
        "GET",
        "monitor.ready",
        "200 when the database answers and a backend is healthy, else 503 with the reason (§15)",
    ),
    "/metrics": (
        "GET",
        "monitor.metrics",
        "Prometheus text for admins, or for ``Authorization: Bearer <METRICS_TOKEN>``",
    ),
    "/api/admin/stats": (
        "GET",
        "monitor.admin_stats",
        "Queue, slots, rates and waits, live; for an admin's session cookie or access token",
    ),
    "/chat/api/reply": (
        "POST",
        "chat_stream.reply",
        "Store the turn, start the answer in the gateway, and follow it as NDJSON events",
    ),
    "/chat/api/reply/{conversation_id}": (
        "GET",
        "chat_stream.follow",
        "Follow the answer being written in the user's conversation; 204 when none is (here)",
    ),
    "/chat/api/reply/stop": (
        "POST",
        "chat_stream.stop",
        "Stop the answer being written in the user's conversation; the part said so far is kept",
    ),
}
# The live queue (docs/contract.md §8): path -> (method, endpoint, summary).
QUEUE_ROUTES = {
    "/api/admin/queue": (
        "get",
        "queue_admin.queue",
        "Waiting requests in dispatch order, then active ones; for an admin's session or access token",
    ),
    "/api/admin/queue/{request_id}": (
        "delete",
        "queue_admin.cancel",
        "Cancel a waiting (503 to its client) or active (in-band error) request; 404 if unknown",
    ),
    # docs/contract.md §12: only the gateway knows which backend has which model loaded.
    "/api/admin/models": (
        "get",
        "models_admin.models",
        "Every model the backends have: where it is loaded, its profile, its loads and adjustments in 24 h",
    ),
}
SUMMARIES = {
    "/api/generate": "Generate a completion",
    "/api/chat": "Chat with a model",
    "/api/embed": "Embed text",
    "/api/embeddings": "Embed text (older request shape)",
    "/v1/chat/completions": "Chat completion",
    "/v1/completions": "Text completion",
    "/v1/embeddings": "Embeddings",
    "/api/tags": "Models available on the healthy backends",
    "/api/ps": "Models loaded in memory",
    "/api/version": "Ollama's version",
    "/api/show": "One model's details",
    "/v1/models": "Models available on the healthy backends",
    "/v1/models/{id}": "One model",
    "/api/pull": "Pull a model",
    "/api/push": "Push a model",
    "/api/create": "Create a model",
    "/api/copy": "Copy a model",
    "/api/delete": "Delete a model",
    "/api/blobs/{digest}": "Check for or upload a model blob (`sha256:` or `sha256-` + 64 hex)",
    "/v1/messages": "Anthropic Messages (Claude Code)",
    "/v1/responses": "OpenAI Responses (Codex)",
    "/v1/audio/transcriptions": "Transcribe audio (multipart, never streams)",
    "/api/status": "Ollama's status",
    "/api/experimental/model-recommendations": "Ollama's model recommendations",
    "/api/me": "The server owner's ollama.com account",
    "/api/signout": "Sign the server out of ollama.com",
    "/api/user/keys/{key}": "Remove a key from the server owner's ollama.com account",
    "/api/experimental/web_search": "Web search with the server owner's ollama.com account",
    "/api/experimental/web_fetch": "Web fetch with the server owner's ollama.com account",
}
LANES = {
    Lane.QUEUED: "**Queued**: waits for a backend slot in priority order (lower first, aging with time); "
    "a full queue, a timeout or no healthy backend answers 503 with `Retry-After`.",
    Lane.FAST: "**Fast lane**: answered at once, never behind a generation.",
    Lane.MANAGE: "**Model management**: admin users and whitelisted IPs only; anyone else gets 403.",
    Lane.ACCOUNT: "**The server owner's ollama.com account**: admin users and whitelisted IPs only; "
    "anyone else gets 403. Never queued.",
}
TAGS = {Lane.MANAGE: "Model management", Lane.ACCOUNT: "ollama.com account"}
_PASS_THROUGH = {"application/json": {"schema": {"$ref": "#/components/schemas/PassThrough"}}}
REQUEST_BODIES = {
    Body.JSON: {"required": True, "content": _PASS_THROUGH},
    Body.OPTIONAL_JSON: {"content": _PASS_THROUGH},
    Body.MULTIPART: {"required": True, "content": {"multipart/form-data": {"schema": {"type": "object"}}}},
    Body.RAW: {"content": {"application/octet-stream": {"schema": {"type": "string"}}}},
}
# Whoever may call the Ollama/OpenAI surface: a key, an access token, a session, or a whitelisted IP
# (no credentials at all, hence the empty requirement).
CALLER_SECURITY = [{"apiKey": []}, {"bearer": []}, {"session": []}, {}]
ADMIN_SECURITY = [{"session": []}, {"bearer": []}]
TRACE_HEADERS = {
    "X-Request-ID": {
        "description": "The id of this request's request-log row.",
        "schema": {"type": "string"},
    },
    "X-Seadragon-Source": {
        "description": "Who the gateway took the caller for.",
        "schema": {"type": "string", "enum": ["direct_api", "custom_app", "web_chat"]},
    },
}
QUEUE_WAIT_HEADER = {
    "X-Seadragon-Queue-Wait": {
        "description": "Milliseconds waited for a slot (absent when a native stream's headers left early).",
        "schema": {"type": "integer"},
    }
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "properties": {"error": {"type": "string"}},
        "required": ["error"],
        "description": "Every error, Ollama's shape.",
    },
    "PassThrough": {
        "type": "object",
        "additionalProperties": True,
        "description": "Ollama's (or OpenAI's) own request or response body, passed through unchanged.",
        "properties": {"model": {"type": "string"}, "stream": {"type": "boolean"}},
    },
    "Health": {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["ok", "degraded"]},
            "backends": {"type": "array", "items": {"$ref": "#/components/schemas/Backend"}},
            "queue_length": {"type": "integer"},
            "active_requests": {"type": "integer"},
        },
    },
    "Readiness": {
        "type": "object",
        "description": "docs/contract.md §15: `reason` only when not ready.",
        "properties": {"ready": {"type": "boolean"}, "reason": {"type": "string"}},
        "required": ["ready"],
    },
    "Backend": {
        "type": "object",
        "properties": {
            "url": {"type": "string", "description": "Credentials in the URL are redacted."},
            "healthy": {"type": "boolean"},
            "slots": {"type": "integer"},
            "in_use": {"type": "integer"},
            "models": {"type": ["array", "null"], "items": {"type": "string"}},
        },
    },
    "ModelEntry": {
        "type": "object",
        "description": "A model any backend has (docs/contract.md §12).",
        "properties": {
            "model": {"type": "string", "description": "The normalised name (llama3.2 = llama3.2:latest)."},
            "backends": {"type": "array", "items": {"type": "string"}, "description": "Redacted URLs."},
            "loaded_on": {"type": "array", "items": {"type": "string"}, "description": "Per /api/ps."},
            "profile": {"type": ["object", "null"], "description": "null when the model has none."},
            "adjusted_24h": {"type": "integer", "description": "Requests whose body the gateway changed."},
            "loads_24h": {"type": "integer", "description": "Responses whose load_duration shows a load."},
        },
        "required": ["model", "backends", "loaded_on", "profile", "adjusted_24h", "loads_24h"],
    },
    "QueueEntry": {
        "type": "object",
        "description": "One waiting or active request (docs/contract.md §8).",
        "properties": {
            "request_id": {"type": "string", "description": "The X-Request-ID its client receives."},
            "state": {"type": "string", "enum": ["waiting", "active"]},
            "source": {"type": "string", "enum": ["direct_api", "custom_app", "web_chat"]},
            "who": {
                "type": "string",
                "description": "key:<id>, key:<id>/end-user:<value>, ip:<whitelist entry id> or user:<id>.",
            },
            "name": {
                "type": "string",
                "description": "What the panel shows for who: key name, entry network or username.",
            },
            "model": {"type": ["string", "null"]},
            "endpoint": {"type": ["string", "null"]},
            "base_priority": {"type": "number"},
            "effective_priority": {"type": "number", "description": "base + fair-share points - aging."},
            "waited_s": {"type": "number"},
            "position": {"type": ["integer", "null"], "description": "1-based; null when active."},
            "eta_s": {"type": ["integer", "null"], "description": "Whole seconds; null when unknown."},
            "backend": {"type": ["string", "null"], "description": "Redacted URL; null while waiting."},
        },
        "required": [
            "request_id",
            "state",
            "source",
            "who",
            "name",
            "model",
            "endpoint",
            "base_priority",
            "effective_priority",
            "waited_s",
            "position",
            "eta_s",
            "backend",
        ],
    },
    "Stats": {
        "type": "object",
        "description": "Live numbers (at most 1 s old). Times in seconds; waits over 5 minutes, rates "
        "over 60 s; `history` holds one point per 10 s for the dashboard's charts.",
        "properties": {
            "queue_length": {"type": "integer"},
            "active_requests": {"type": "integer"},
            "requests_per_minute": {"type": "integer"},
            "average_wait_time": {"type": "number"},
            "p95_wait_time": {"type": "number"},
            "tokens_per_second": {"type": "number"},
            "gpu_seconds": {
                "type": "number",
                "description": "GPU time (seconds requests held a slot) of the requests that ended in the "
                "last `gpu_window_seconds`; `by_source` has each source's `gpu_seconds` and `gpu_share`.",
            },
            "gpu_window_seconds": {"type": "integer"},
            "cloud": {
                "type": "object",
                "description": "Requests for cloud models (never on the GPU; not in `tokens_per_second`).",
                "properties": {"requests_per_minute": {"type": "integer"}},
            },
            "by_source": {"type": "object", "additionalProperties": {"type": "object"}},
            "backends": {"type": "array", "items": {"$ref": "#/components/schemas/Backend"}},
            "status_counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "generated_at": {"type": "string", "format": "date-time"},
            "history": {"type": "array", "items": {"type": "object"}},
        },
        "required": ["queue_length", "active_requests", "requests_per_minute", "average_wait_time"],
    },
}


def gateway_paths() -> dict[str, dict[str, Any]]:
    """OpenAPI path items for every route the gateway (Quart) serves."""
    paths: dict[str, dict[str, Any]] = {}
    for path, entry in {**TABLE, **PATTERN_ENTRIES}.items():
        paths[path] = {method.lower(): _proxied(path, method, entry) for method in entry.methods}
    alias = ALIAS_PREFIX + "{endpoint}"
    paths[alias] = {
        method.lower(): {
            "tags": ["Ollama API"],
            "summary": "Alias of /api/{endpoint}",
            "description": f"`{ALIAS_PREFIX}X` is served exactly as `/api/X`: same lane, same rules.",
            "operationId": f"alias_{method.lower()}",
            "parameters": [
                {"name": "endpoint", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "security": CALLER_SECURITY,
            "responses": {
                "200": {"description": "As `/api/{endpoint}`."},
                "404": _error("Not an Ollama route."),
            },
        }
        for method in sorted({m for entry in TABLE.values() for m in entry.methods if m != "HEAD"})
    }
    paths.update(_own_paths())
    return paths


def _proxied(path: str, method: str, route: Entry) -> dict[str, Any]:
    openai = path.startswith("/v1/")
    queued = route.lane is Lane.QUEUED
    operation: dict[str, Any] = {
        "tags": [TAGS.get(route.lane) or ("OpenAI API" if openai else "Ollama API")],
        "summary": SUMMARIES.get(path, path),
        "description": LANES[route.lane] + " Bodies and streams pass through unchanged.",
        "operationId": re.sub(r"\W+", "_", f"{method} {path}").strip("_").lower(),
        "security": CALLER_SECURITY,
        "responses": {
            "200": _success(path, route, {**TRACE_HEADERS, **(QUEUE_WAIT_HEADER if queued else {})}),
            "400": _error("A bad body, or both key headers with different values."),
            "401": _error("No identity, or an unknown, revoked or malformed key."),
            "403": _error("Not allowed here (model management, or a foreign browser Origin)."),
            "404": _error("Unknown model (Ollama's answer), or not a gateway route."),
            "502": _error("Ollama failed or refused the connection."),
        },
    }
    if queued:
        operation["responses"]["503"] = _error("Queue full, waited past the timeout, or no healthy backend.")
        operation["responses"]["504"] = _error("Ollama sent no first byte in time.")
    names = re.findall(r"{(\w+)}", path)
    if names:
        operation["parameters"] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in names
        ]
    body = route.body_of(method)
    if body in REQUEST_BODIES:
        operation["requestBody"] = REQUEST_BODIES[body]
    return operation


def _success(path: str, route: Entry, headers: dict) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": _ref("PassThrough")}}
    wire = wire_of(path)
    if route.can_stream:
        if wire is not Wire.OLLAMA:
            named = wire in (Wire.ANTHROPIC, Wire.RESPONSES)
            ending = "named events, no `[DONE]`" if named else "ending `data: [DONE]`"
            content["text/event-stream"] = {"schema": {"type": "string", "description": f"SSE, {ending}."}}
        else:
            content["application/x-ndjson"] = {
                "schema": {"type": "string", "description": "One JSON object a line."}
            }
    text = (
        'Ollama\'s answer; streams unless `"stream": false`.'
        if route.streams_by_default
        else "Ollama's answer."
    )
    if route.can_stream and not route.streams_by_default:
        text = 'Ollama\'s answer; an SSE stream with `"stream": true`.'
    return {"description": text, "headers": headers, "content": content}


def _own_paths() -> dict[str, dict[str, Any]]:
    """The gateway's own routes besides the proxied surface."""
    paths: dict[str, dict[str, Any]] = {}
    for path, (method, endpoint, summary) in OWN_ROUTES.items():
        paths.setdefault(path, {})[method.lower()] = _own_route(endpoint, summary)
    return paths | {
        path: {method: _queue_route(endpoint, summary)}
        for path, (method, endpoint, summary) in QUEUE_ROUTES.items()
    }


def _queue_route(endpoint: str, summary: str) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "tags": ["Admin API"],
        "summary": summary,
        "operationId": endpoint.replace(".", "_"),
        "security": ADMIN_SECURITY,
    }
    refusals = {"401": _error("Not signed in."), "403": _error("Not an administrator.")}
    if endpoint in ("queue_admin.queue", "models_admin.models"):
        entry, what = (
            ("QueueEntry", "The queue") if endpoint == "queue_admin.queue" else ("ModelEntry", "Models")
        )
        listing = {"type": "array", "items": _ref(entry)}
        operation["responses"] = {
            "200": {"description": what, "content": {"application/json": {"schema": listing}}},
            **refusals,
        }
        return operation
    operation["description"] = (
        "A waiting request is answered 503 `cancelled by an administrator` (in-band if its headers "
        "went out); an active one ends with an in-band error and its upstream closes. With a session "
        "cookie, send the page's CSRF token in `X-CSRFToken`."
    )
    operation["parameters"] = [
        {"name": "request_id", "in": "path", "required": True, "schema": {"type": "string"}}
    ]
    cancelled = {
        "type": "object",
        "properties": {"request_id": {"type": "string"}, "cancelled": {"type": "boolean", "const": True}},
        "required": ["request_id", "cancelled"],
    }
    operation["responses"] = {
        "200": {"description": "Cancelled", "content": {"application/json": {"schema": cancelled}}},
        "400": _error("A session without its CSRF token."),
        **refusals,
        "404": _error("No waiting or active request with this id."),
    }
    return operation


def _own_route(endpoint: str, summary: str) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "tags": ["Gateway"],
        "summary": summary,
        "operationId": endpoint.replace(".", "_"),
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}
        },
    }
    if endpoint == "monitor.health":
        operation["responses"]["200"]["content"]["application/json"]["schema"] = _ref("Health")
    elif endpoint == "monitor.ready":
        operation["responses"] = {
            "200": {"description": "Ready", "content": {"application/json": {"schema": _ref("Readiness")}}},
            "503": {
                "description": "Not ready: no healthy backend, no database or Redis, or shutting down",
                "content": {"application/json": {"schema": _ref("Readiness")}},
            },
        }
    elif endpoint == "monitor.admin_stats":
        operation["tags"] = ["Admin API"]
        operation["security"] = ADMIN_SECURITY
        operation["responses"] = {
            "200": {"description": "Live stats", "content": {"application/json": {"schema": _ref("Stats")}}},
            "401": _error("Not signed in."),
            "403": _error("Not an administrator."),
        }
    elif endpoint == "chat_stream.follow":
        operation["parameters"] = [
            {"name": "conversation_id", "in": "path", "required": True, "schema": {"type": "integer"}}
        ]
    elif endpoint == "monitor.metrics":
        operation["security"] = [*ADMIN_SECURITY, {"metricsToken": []}]
        operation["responses"] = {
            "200": {
                "description": "Prometheus text exposition",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            "401": _error("No admin session, admin token or scrape token."),
            "403": _error("Signed in, but not an administrator."),
        }
    return operation


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(text: str) -> dict[str, Any]:
    return {"description": text, "content": {"application/json": {"schema": _ref("Error")}}}
