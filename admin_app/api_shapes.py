"""What ``/openapi.json`` says about the admin app beyond its url_map: the JSON shapes of docs/contract.md §3.

Keyed by endpoint name; ``tests/admin/test_docs.py`` checks that every JSON endpoint has an
entry, that no entry is stale, and that real answers match the shapes.
"""

from __future__ import annotations

from typing import Any

from common.sessions import SESSION_COOKIE_NAME

TAGS = [
    {
        "name": "Ollama API",
        "description": "Ollama's own API: any stock Ollama client works with this base URL.",
    },
    {"name": "OpenAI API", "description": "OpenAI-compatible API under `/v1`."},
    {
        "name": "Model management",
        "description": "Pull, push, create, copy, delete: admins and whitelisted IPs.",
    },
    {"name": "Gateway", "description": "Who answers, liveness and Prometheus metrics."},
    {
        "name": "Admin API",
        "description": "JSON for scripts: an admin's access token or session (+ `X-CSRFToken`).",
    },
    {"name": "Accounts", "description": "Sign in, sign up, sign out, access tokens."},
    {"name": "Admin panel", "description": "The HTML pages of the admin panel (admins only)."},
    {"name": "Documentation", "description": "This document and its viewer."},
]
SECURITY_SCHEMES = {
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "An API key `sdk_…`."},
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (`sdk_…`) or a user's access token from `POST /auth/token`.",
    },
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": SESSION_COOKIE_NAME,
        "description": "A signed-in browser.",
    },
    "metricsToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "`SEADRAGON_METRICS_TOKEN`, for scrapers.",
    },
}
ADMIN_SECURITY = [{"bearer": []}, {"session": []}]


def ref(name: str) -> dict[str, str]:
    """A reference to a schema of the document."""
    return {"$ref": f"#/components/schemas/{name}"}


def _object(required: list[str], **properties: dict) -> dict[str, Any]:
    """An answer's shape: exactly these fields (a secret that slipped in would not fit)."""
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def _input(required: list[str], **properties: dict) -> dict[str, Any]:
    """A request body's shape."""
    return {"type": "object", "properties": properties, "required": required}


STRING, INTEGER, BOOLEAN = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
TIME, MAYBE_TIME = (
    {"type": "string", "format": "date-time"},
    {"type": ["string", "null"], "format": "date-time"},
)
PRIORITY = {"type": "integer", "minimum": 0, "maximum": 100, "description": "Lower is served first."}
# The JSON shapes of docs/contract.md §3.
SCHEMAS = {
    "WhitelistEntry": _object(
        ["id", "ip", "label", "priority", "added_at"],
        id=INTEGER,
        ip=STRING,
        label=STRING,
        priority=PRIORITY,
        added_at=TIME,
    ),
    "NewWhitelistEntry": _input(
        ["ip"], ip={"type": "string", "description": "IP or CIDR"}, label=STRING, priority=PRIORITY
    ),
    "RegistrationToken": _object(
        ["id", "prefix", "created_at", "expires_at", "status", "used_by"],
        id=INTEGER,
        prefix=STRING,
        created_at=TIME,
        expires_at=TIME,
        status={"type": "string", "enum": ["active", "used", "expired", "revoked"]},
        used_by={"type": ["string", "null"]},
    ),
    "NewRegistrationToken": _input([], expires_in_days={"type": "integer", "minimum": 1, "maximum": 365}),
    "CreatedRegistrationToken": _object(
        ["id", "token", "expires_at", "register_url"],
        id=INTEGER,
        token={"type": "string", "description": "Shown once."},
        expires_at=TIME,
        register_url=STRING,
    ),
    "APIKey": _object(
        ["id", "name", "prefix", "priority", "created_at", "last_used", "is_active"],
        id=INTEGER,
        name=STRING,
        prefix=STRING,
        priority=PRIORITY,
        created_at=TIME,
        last_used=MAYBE_TIME,
        is_active=BOOLEAN,
    ),
    "NewAPIKey": _input(
        ["name", "priority"], name={"type": "string", "minLength": 1, "maxLength": 100}, priority=PRIORITY
    ),
    "CreatedAPIKey": _object(
        ["id", "key", "name", "priority", "prefix", "created_at"],
        id=INTEGER,
        key={"type": "string", "description": "Shown once."},
        name=STRING,
        priority=PRIORITY,
        prefix=STRING,
        created_at=TIME,
    ),
    "Credentials": _input(["username", "password"], username=STRING, password=STRING),
    "AccessToken": _object(
        ["access_token", "token_type", "expires_in"],
        access_token=STRING,
        token_type={"const": "bearer"},
        expires_in=INTEGER,
    ),
}


def _json(status: str, text: str, schema: dict) -> dict[str, dict]:
    return {status: {"description": text, "content": {"application/json": {"schema": schema}}}}


def error(status: str, text: str) -> dict[str, dict]:
    """A JSON error answer, in Ollama's shape."""
    return _json(status, text, ref("Error"))


def _list(name: str) -> dict[str, dict]:
    return _json("200", "Newest first.", {"type": "array", "items": ref(name)})


# What each JSON endpoint takes and answers, by endpoint name.
JSON_ENDPOINTS: dict[str, dict[str, Any]] = {
    "api.whitelist_list": {"responses": _list("WhitelistEntry")},
    "api.whitelist_add": {
        "body": "NewWhitelistEntry",
        "responses": {
            **_json("201", "Added.", ref("WhitelistEntry")),
            **error("400", "A bad field, named."),
            **error("409", "Already listed."),
        },
    },
    "api.whitelist_remove": {
        "responses": {**_json("200", "Removed.", ref("WhitelistEntry")), **error("404", "Not listed.")}
    },
    "api.tokens_list": {"responses": _list("RegistrationToken")},
    "api.tokens_create": {
        "body": "NewRegistrationToken",
        "responses": {
            **_json("201", "Created; the token is shown this once.", ref("CreatedRegistrationToken")),
            **error("400", "A bad field, named."),
        },
    },
    "api.tokens_revoke": {
        "responses": {
            **_json("200", "Revoked.", ref("RegistrationToken")),
            **error("404", "Unknown token."),
        }
    },
    "api.apikeys_list": {"responses": _list("APIKey")},
    "api.apikeys_create": {
        "body": "NewAPIKey",
        "responses": {
            **_json("201", "Created; the key is shown this once.", ref("CreatedAPIKey")),
            **error("400", "A bad field, named."),
        },
    },
    "api.apikeys_revoke": {
        "responses": {
            **_json("200", "Revoked (also when it already was).", ref("APIKey")),
            **error("404", "Unknown key."),
        }
    },
    "auth.token": {
        "body": "Credentials",
        "public": True,
        "responses": {
            **_json("200", "A bearer token.", ref("AccessToken")),
            **error("400", "Not a JSON object with username and password."),
            **error("401", "Wrong username or password."),
            **error("429", "Locked for a while after 5 failures (see Retry-After)."),
        },
    },
    "docs.openapi": {"public": True, "responses": _json("200", "This document.", {"type": "object"})},
}
