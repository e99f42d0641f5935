"""Service functions behind both the HTML panel and the JSON API, one module per concern.

``whitelist``, ``tokens``, ``apikeys``, ``users``, ``audit``, ``dashboard``: each function
validates its own input (types included, so the JSON API can pass decoded values straight
through), writes the change and its audit row in one transaction, commits and returns model
rows. This module holds what they share: the errors (a :class:`ServiceError` names the field
at fault) and the checks of ids, numbers and names.
"""

from __future__ import annotations

import sqlalchemy as sa

from admin_app.extensions import db
from common.models import MAX_ID

PRIORITY_MIN, PRIORITY_MAX = 0, 100
NAME_MAX = 100


class ServiceError(Exception):
    """A request the service refuses; ``field`` names the input at fault."""

    status = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(ServiceError):
    """The id or address names nothing."""

    status = 404


class Conflict(ServiceError):
    """The thing already exists."""

    status = 409


def check_int(value: object, field: str, low: int, high: int) -> int:
    """``value`` as an int in ``[low, high]``; bools, strings and fractions are refused."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ServiceError(f"{field} must be a whole number from {low} to {high}", field)
    return value


def check_text(value: object, field: str, *, required: bool, maximum: int = NAME_MAX) -> str:
    """A stripped string of at most ``maximum`` characters (at least one when required)."""
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise ServiceError(f"{field} must be a string", field)
    text = value.strip()
    if required and not text:
        raise ServiceError(f"{field} is required (1 to {maximum} characters)", field)
    if len(text) > maximum:
        raise ServiceError(f"{field} must be at most {maximum} characters", field)
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise ServiceError(f"{field} must not contain control characters", field)
    return text


def get_by_id(model, row_id: int):
    """The row with this primary key, or ``None`` (also for absurdly large ids)."""
    return db.session.get(model, row_id) if 0 <= row_id <= MAX_ID else None


def get_or_not_found(model, row_id: int, what: str):
    """The row with this primary key; :class:`NotFound` ("no <what> <id>") if there is none."""
    row = get_by_id(model, row_id)
    if row is None:
        raise NotFound(f"no {what} {row_id}")
    return row


def newest_first(model, column) -> list:
    """Every row of ``model``, newest first by ``column`` (then by id)."""
    return list(db.session.scalars(sa.select(model).order_by(column.desc(), model.id.desc())))
