"""Reading the request log for people and scripts: one filter parser for the page, the JSON and the CSV.

The query string is the same everywhere (docs/contract.md §6): ``since``, ``until`` (ISO 8601),
``source``, ``key`` (an id), ``user`` (an id or a username), ``status`` (``404`` or a class like
``4xx``), ``model``, ``endpoint``, ``ip``, ``request_id``. Empty values mean any.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import UTC, datetime

from admin_app.accounts import find_user
from admin_app.extensions import db
from admin_app.services import ServiceError, get_by_id
from common.models import MAX_ID, APIKey, RequestLog, User, parse_utc
from common.network import parse_ip
from common.sources import RequestSource
from common.usage import MAX_PER_PAGE, RequestFilters, request_slice

FILTER_NAMES = ("since", "until", "source", "key", "user", "status", "model", "endpoint", "ip", "request_id")
SOURCES = tuple(source.value for source in RequestSource)
STATUS = re.compile(r"([1-5])(?:xx|\d\d)", re.IGNORECASE)
TEXT_MAX = {"model": 200, "endpoint": 200, "request_id": 64}
DEFAULT_LIMIT = 100


def _time(value: str, field: str) -> datetime:
    moment = parse_utc(value)
    if moment is None:
        raise ServiceError(
            f"{field}: {value[:40]!r} is not an ISO 8601 time like 2026-12-01T09:00:00Z",
            field,
        )
    return moment


def _digits(value: str) -> int | None:
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 18 else None


def _key(value: str) -> int:
    key_id = _digits(value)
    if key_id is None or get_by_id(APIKey, key_id) is None:
        raise ServiceError(f"key: no API key {value[:40]!r} (give its id)", "key")
    return key_id


def _user(value: str) -> int:
    user_id = _digits(value)
    user = get_by_id(User, user_id) if user_id is not None else find_user(value)
    if user is None:
        raise ServiceError(f"user: no user {value[:40]!r} (give an id or a username)", "user")
    return user.id


def parse_filters(args: Mapping[str, str]) -> RequestFilters:
    """The filters a query string asks for; a :class:`ServiceError` names the first bad one."""
    given = {name: (args.get(name) or "").strip() for name in FILTER_NAMES}
    given = {name: value for name, value in given.items() if value}
    values: dict[str, object] = {}
    for name in ("since", "until"):
        if name in given:
            values[name] = _time(given[name], name)
    if "source" in given:
        if given["source"] not in SOURCES:
            raise ServiceError(f"source must be one of {', '.join(SOURCES)}", "source")
        values["source"] = given["source"]
    if "key" in given:
        values["api_key_id"] = _key(given["key"])
    if "user" in given:
        values["user_id"] = _user(given["user"])
    if "status" in given:
        match = STATUS.fullmatch(given["status"]) if given["status"].isascii() else None
        if match is None:
            raise ServiceError("status must be an HTTP status from 100 to 599 or a class like 4xx", "status")
        if given["status"].lower().endswith("xx"):
            values["status_class"] = int(match.group(1))
        else:
            values["status"] = int(given["status"])
    for name, maximum in TEXT_MAX.items():
        if name in given:
            if len(given[name]) > maximum:
                raise ServiceError(f"{name} must be at most {maximum} characters", name)
            values[name] = given[name]
    if "ip" in given:
        address = parse_ip(given["ip"])
        if address is None:
            raise ServiceError(f"ip: {given['ip'][:40]!r} is not an IP address", "ip")
        values["client_ip"] = str(address)
    return RequestFilters(**values)


def parse_limit(value: str | None) -> int:
    """A page size from 1 to 500 (100 when absent)."""
    if value is None or not value.strip():
        return DEFAULT_LIMIT
    limit = _digits(value.strip())
    if limit is None or not 1 <= limit <= MAX_PER_PAGE:
        raise ServiceError(f"limit must be a whole number from 1 to {MAX_PER_PAGE}", "limit")
    return limit


def cursor_after(row: RequestLog) -> str:
    """An opaque cursor naming the position just after ``row`` (newest first)."""
    text = f"{row.created_at.astimezone(UTC).isoformat()}|{row.id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def parse_cursor(value: str | None) -> tuple[datetime, int] | None:
    """The (time, id) a cursor from :func:`cursor_after` names; ``None`` when absent."""
    if value is None or not value.strip():
        return None
    try:
        text = base64.urlsafe_b64decode(value.strip() + "=" * (-len(value.strip()) % 4)).decode()
        time, _, row_id = text.partition("|")
        moment, position = parse_utc(time), int(row_id)
        if moment is None or not 0 <= position <= MAX_ID:
            raise ValueError("out of range")
        return moment, position
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ServiceError(
            "cursor is not one this API handed out (use next_cursor as given)", "cursor"
        ) from None


def slice_rows(
    filters: RequestFilters, limit: int, after: tuple[datetime, int] | None
) -> tuple[list, str | None]:
    """A page of rows newest first and the cursor of the next page (``None`` at the end)."""
    rows = request_slice(db.session, filters=filters, limit=limit + 1, after=after)
    if len(rows) > limit:
        return rows[:limit], cursor_after(rows[limit - 1])
    return rows, None
