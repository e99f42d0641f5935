"""The panel's edit-in-place forms (docs/contract.md §11): form fields → the PATCH the JSON API takes.

The HTML forms post plain text; this turns it into the same values a script would send, so
``services.*.update_*`` decides every rule once. An empty box clears its field (``null``).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from flask import request

from admin_app.services import ServiceError
from common.models import iso
from common.policies import LIMIT_RANGES, MODELS

NUMBER_FIELDS = frozenset({*LIMIT_RANGES, "priority"})
SUMMARY_UNITS = {
    "rpm": "/min",
    "max_queued": " waiting",
    "max_concurrent": " running",
    "daily_tokens": " tokens/24 h",
    "daily_gpu_seconds": " GPU s/24 h",
}


def patch_from_form(fields: tuple[str, ...]) -> dict[str, Any]:
    """The PATCH of the submitted form: numbers as ints, ``models`` split on commas and spaces."""
    patch: dict[str, Any] = {}
    for field in fields:
        if field not in request.form:
            continue
        text = request.form[field].strip()
        if field == MODELS:
            patch[field] = [item for item in re.split(r"[\s,]+", text) if item] or None
        elif not text:
            patch[field] = None
        elif field in NUMBER_FIELDS and text.isascii() and text.isdigit() and len(text) <= 15:
            patch[field] = int(text)
        else:
            patch[field] = text  # the service names it if it is not what the field takes
    return patch


def edit_value(row: object, field: str, submitted: bool = False) -> str:
    """What an edit box shows: the text just submitted (``submitted``: refused), else the stored value."""
    if submitted and field in request.form:
        return request.form[field]
    value = getattr(row, field, None)
    if value is None:
        return ""
    if field == MODELS:
        return ", ".join(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M")
    return str(value)


def policy_summary(row: object) -> str:
    """A row's limits in one line: ``models qwen* · 60/min · 100000 tokens/24 h`` (or ``no limits``)."""
    parts = []
    if getattr(row, MODELS, None):
        parts.append("models " + ", ".join(row.models))
    for field, unit in SUMMARY_UNITS.items():
        value = getattr(row, field, None)
        if value is not None:
            parts.append(f"{value}{unit}")
    expires = getattr(row, "expires_at", None)
    if expires is not None:
        parts.append("expires " + iso(expires).replace("T", " ")[:16] + " UTC")
    header = getattr(row, "end_user_header", None)
    if header:
        parts.append(f"end user: {header}")
    return " · ".join(parts) or "no limits"


# How the panel names the fields in its error messages, as templates/_policy.html labels them
# (the API names them as its JSON does).
FIELD_WORDS = {
    "name": "Name",
    "label": "Label",
    "priority": "Priority",
    "models": "Models",
    "rpm": "Requests per minute",
    "max_queued": "Max waiting",
    "max_concurrent": "Max running",
    "daily_tokens": "Tokens per 24 h",
    "expires_at": "Expires (UTC)",
    "end_user_header": "End-user header",
}


def in_words(field: str, message: str) -> str:
    """A service's message about ``field`` as the panel says it: the field's label, no JSON words."""
    label = FIELD_WORDS.get(field, field.replace("_", " ").capitalize())
    for prefix in (f"{field}: ", f"{field} "):
        if field and message.startswith(prefix):
            message = message[len(prefix) :]
            break
    message = message.replace(", or null for no limit", ", or empty for no limit")
    message = message.replace(", or null for every model", ", or empty for every model")
    message = message.replace(", or null", ", or empty")
    return f"{label}: {message}" if field else message[:1].upper() + message[1:]


def refused_edit(row_id: int, error: ServiceError) -> dict[str, Any]:
    """What the page needs to reopen a refused row editor with every error under its field, in words."""
    errors = getattr(error, "errors", None) or {error.field or "": error.message}
    return {"id": row_id, "errors": {field: in_words(field, message) for field, message in errors.items()}}
