"""OpenAPI shapes of ``/account/api`` (docs/contract.md §14): a user's own keys and usage."""

from __future__ import annotations

from typing import Any

from admin_app.api.shapes import (
    BOOLEAN,
    INTEGER,
    MAYBE_INTEGER,
    MAYBE_NUMBER,
    MAYBE_TIME,
    STRING,
    TIME,
    _input,
    _json,
    _object,
    error,
    ref,
)

_PERIOD = _object(
    ["requests", "prompt_tokens", "completion_tokens", "gpu_seconds"],
    requests={**INTEGER, "description": "Inference requests (model lists and page loads are not usage)."},
    prompt_tokens=INTEGER,
    completion_tokens=INTEGER,
    gpu_seconds={
        "type": "number",
        "description": "How long the requests held a slot (docs/contract.md §13).",
    },
)

ACCOUNT_SCHEMAS: dict[str, dict[str, Any]] = {
    "PersonalKey": _object(
        ["id", "name", "prefix", "created_at", "expires_at", "last_used", "is_active", "revoked_at"],
        id=INTEGER,
        name=STRING,
        prefix=STRING,
        created_at=TIME,
        expires_at=MAYBE_TIME,
        last_used=MAYBE_TIME,
        is_active=BOOLEAN,
        revoked_at=MAYBE_TIME,
    ),
    "NewPersonalKey": _input(
        ["name"],
        name={"type": "string", "minLength": 1, "maxLength": 100},
        expires_at={**MAYBE_TIME, "description": "ISO 8601; absent or null: never."},
    ),
    "CreatedPersonalKey": _object(
        ["id", "key", "name", "prefix", "created_at", "expires_at"],
        id=INTEGER,
        key={"type": "string", "description": "Shown once."},
        name=STRING,
        prefix=STRING,
        created_at=TIME,
        expires_at=MAYBE_TIME,
    ),
    "OwnUsage": _object(
        ["day", "week", "limits", "remaining"],
        day=_PERIOD,
        week=_PERIOD,
        limits={
            "type": "object",
            "description": "The policy that applies to you (null: no limit).",
            "properties": {
                "models": {"type": ["array", "null"], "items": STRING},
                "rpm": MAYBE_INTEGER,
                "max_queued": MAYBE_INTEGER,
                "max_concurrent": MAYBE_INTEGER,
                "daily_tokens": MAYBE_INTEGER,
                "daily_gpu_seconds": MAYBE_INTEGER,
            },
        },
        remaining={
            "type": "object",
            "description": "What is left of each daily limit in the rolling 24 h (null: unlimited).",
            "properties": {"daily_tokens": MAYBE_INTEGER, "daily_gpu_seconds": MAYBE_NUMBER},
        },
    ),
}

ACCOUNT_ENDPOINTS: dict[str, dict[str, Any]] = {
    "account_api.keys_list": {
        "responses": _json("200", "Newest first.", {"type": "array", "items": ref("PersonalKey")})
    },
    "account_api.keys_create": {
        "body": "NewPersonalKey",
        "responses": {
            **_json("201", "Created; the key is shown this once.", ref("CreatedPersonalKey")),
            **error("400", "A bad field, named."),
            **error("409", "USER_MAX_KEYS keys are active already."),
        },
    },
    "account_api.keys_revoke": {
        "responses": {
            **_json("200", "Revoked (also when it already was).", ref("PersonalKey")),
            **error("404", "Not one of your keys."),
        }
    },
    "account_api.usage": {"responses": _json("200", "The last 24 h and 7 days.", ref("OwnUsage"))},
}
