"""What ``/openapi.json`` says about the admin app beyond its url_map: the JSON shapes (contract §3, §6, §7).

Keyed by endpoint name; ``tests/admin/test_docs.py`` checks that every JSON endpoint has an
entry, that no entry is stale, and that real answers match the shapes.

Longer than 300 lines because it is data: one schema per JSON shape, kept next to each other so a
reader compares them at a glance.
"""

from __future__ import annotations

from typing import Any

from common.sessions import SESSION_COOKIE_NAME
from common.usage import ROW_FIELDS

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
TOKEN_NOTE = {
    "type": "string",
    "description": "For whom the invitation is (present only when one was given).",
}
PRIORITY = {"type": "integer", "minimum": 0, "maximum": 100, "description": "Lower is served first."}
MAYBE_STRING, MAYBE_INTEGER = {"type": ["string", "null"]}, {"type": ["integer", "null"]}
MAYBE_NUMBER = {"type": ["number", "null"]}
# docs/contract.md §7: the policy of a whitelist entry or user (null: no limit); keys add expires_at.
LIMITS = {
    "models": {
        "type": ["array", "null"],
        "items": {"type": "string"},
        "description": "Model-name patterns (`*` wildcard); null or empty: every model.",
    },
    "rpm": {**MAYBE_INTEGER, "description": "Queued requests per rolling minute."},
    "max_queued": {**MAYBE_INTEGER, "description": "Requests waiting at once."},
    "max_concurrent": {**MAYBE_INTEGER, "description": "Requests holding a slot at once."},
    "daily_tokens": {**MAYBE_INTEGER, "description": "Prompt + completion tokens per rolling 24 h."},
    "daily_gpu_seconds": {
        **MAYBE_INTEGER,
        "description": "GPU time (seconds holding a slot) per rolling 24 h (docs/contract.md §13).",
    },
}
KEY_POLICY = {
    **LIMITS,
    "expires_at": {**MAYBE_TIME, "description": "After this the key is refused (401 API key expired)."},
    "end_user_header": {
        **MAYBE_STRING,
        "description": "A request header naming the end user behind this shared key.",
    },
}
DURATION = {
    "type": ["string", "number", "null"],
    "description": 'Seconds, or a Go duration such as "30m" or "1h30m"; negative: forever.',
}
# docs/contract.md §12: a model's profile.
PROFILE = {
    "load_options": {
        "type": ["string", "object"],
        "description": '"client" (as sent), "server" (Runner options removed) or Runner options to pin.',
    },
    "keep_alive": {**DURATION, "description": "Used when a request sends none."},
    "keep_alive_min": DURATION,
    "keep_alive_max": DURATION,
    "max_parallel": {**MAYBE_INTEGER, "description": "Requests for the model holding slots at once."},
}
# The JSON shapes of docs/contract.md §3, §6, §7 and §12.
SCHEMAS = {
    "ModelProfile": _object(["model", *PROFILE], model=STRING, **PROFILE),
    "ModelProfileFields": _input([], **PROFILE),
    "WhitelistEntry": _object(
        ["id", "ip", "label", "priority", "added_at"],
        id=INTEGER,
        ip=STRING,
        label=STRING,
        priority=PRIORITY,
        added_at=TIME,
        **LIMITS,
    ),
    "NewWhitelistEntry": _input(
        ["ip"],
        ip={"type": "string", "description": "IP or CIDR"},
        label=STRING,
        priority=PRIORITY,
        allow_everyone={**BOOLEAN, "description": "Required (true) for 0.0.0.0/0 or ::/0."},
    ),
    "WhitelistEntryChange": _input([], label=MAYBE_STRING, priority=PRIORITY, **LIMITS),
    "RegistrationToken": _object(
        ["id", "prefix", "created_at", "expires_at", "status", "used_by"],
        id=INTEGER,
        prefix=STRING,
        created_at=TIME,
        expires_at=TIME,
        status={"type": "string", "enum": ["active", "used", "expired", "revoked"]},
        used_by={"type": ["string", "null"]},
        note=TOKEN_NOTE,
    ),
    "NewRegistrationToken": _input(
        [],
        expires_in_days={"type": "integer", "minimum": 1, "maximum": 365},
        note={**TOKEN_NOTE, "maxLength": 200},
    ),
    "CreatedRegistrationToken": _object(
        ["id", "token", "expires_at", "register_url"],
        id=INTEGER,
        token={"type": "string", "description": "Shown once."},
        expires_at=TIME,
        register_url=STRING,
        note=TOKEN_NOTE,
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
        owner={**MAYBE_STRING, "description": "A personal key's user; null for a key an admin made."},
        **KEY_POLICY,
    ),
    "APIKeyChange": _input(
        [], name={"type": "string", "minLength": 1, "maxLength": 100}, priority=PRIORITY, **KEY_POLICY
    ),
    "User": _object(
        ["id", "username", "is_admin", "is_active", "created_at", "last_login", *LIMITS],
        id=INTEGER,
        username=STRING,
        is_admin=BOOLEAN,
        is_active=BOOLEAN,
        created_at=TIME,
        last_login=MAYBE_TIME,
        **LIMITS,
    ),
    "RequestLogRow": _object(
        list(ROW_FIELDS),
        request_id=STRING,
        time=TIME,
        source=MAYBE_STRING,
        who={**MAYBE_STRING, "description": "The key's name, the username or the whitelist entry's label."},
        client_ip=MAYBE_STRING,
        endpoint=STRING,
        model=MAYBE_STRING,
        status=INTEGER,
        stage=MAYBE_STRING,
        queue_wait_ms=MAYBE_NUMBER,
        ttfb_ms=MAYBE_NUMBER,
        duration_ms=MAYBE_NUMBER,
        prompt_tokens=MAYBE_INTEGER,
        completion_tokens=MAYBE_INTEGER,
        error=MAYBE_STRING,
        gpu_ms={**MAYBE_NUMBER, "description": "GPU time: ms holding a slot (null: never held one)."},
        load_ms={**MAYBE_NUMBER, "description": "Ollama's load_duration in ms, when it reported one."},
    ),
    "RequestLogPage": _object(
        ["requests", "next_cursor"],
        requests={"type": "array", "items": ref("RequestLogRow")},
        next_cursor={**MAYBE_STRING, "description": "Pass back as `cursor` for older rows; null at the end."},
    ),
    "UserChange": _input([], is_admin=BOOLEAN, is_active=BOOLEAN, **LIMITS),
    "AuditEntry": _object(
        ["id", "time", "actor", "action", "target", "changes"],
        id=INTEGER,
        time=TIME,
        actor=MAYBE_STRING,
        action={"type": "string", "description": "`<thing>.<verb>`, e.g. `apikey.update`."},
        target=MAYBE_STRING,
        changes={"type": "object", "description": "What changed: `{field: [old, new]}` or the values set."},
    ),
    "NewAPIKey": _input(
        ["name", "priority"],
        name={"type": "string", "minLength": 1, "maxLength": 100},
        priority=PRIORITY,
        **KEY_POLICY,
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
    "PasswordResetLink": _object(
        ["url", "expires_at"],
        url={
            "type": "string",
            "description": "PUBLIC_URL + /auth/reset?token=…; a relative path without PUBLIC_URL.",
        },
        expires_at=TIME,
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
    "api.model_profile_set": {
        "body": "ModelProfileFields",
        "responses": {
            **_json("200", "Stored.", ref("ModelProfile")),
            **error("400", "A bad value or unknown field, named."),
        },
    },
    "api.model_profile_delete": {
        "responses": {**_json("200", "Removed.", ref("ModelProfile")), **error("404", "No profile.")}
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
    "api.whitelist_update": {
        "body": "WhitelistEntryChange",
        "responses": {
            **_json("200", "Changed.", ref("WhitelistEntry")),
            **error("400", "A bad value or unknown field, named."),
            **error("404", "Not listed."),
        },
    },
    "api.apikeys_update": {
        "body": "APIKeyChange",
        "responses": {
            **_json("200", "Changed.", ref("APIKey")),
            **error("400", "A bad value or unknown field, named."),
            **error("404", "Unknown key."),
        },
    },
    "api.users_list": {"responses": _list("User")},
    "api.users_update": {
        "body": "UserChange",
        "responses": {
            **_json("200", "Changed.", ref("User")),
            **error("400", "A bad value or unknown field, named; or demoting or disabling yourself."),
            **error("404", "Unknown user."),
        },
    },
    "api.requests_list": {
        "responses": {
            **_json("200", "Newest first, one page.", ref("RequestLogPage")),
            **error("400", "A bad filter, `limit` or `cursor`, named."),
        },
    },
    "api.audit_list": {
        "responses": {**_list("AuditEntry"), **error("400", "A bad `limit` or `before`.")},
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
    "api.users_password_reset": {
        "responses": {
            **_json("201", "A single-use link, shown this once.", ref("PasswordResetLink")),
            **error("404", "Unknown user."),
        }
    },
}
