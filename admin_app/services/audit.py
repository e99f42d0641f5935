"""The audit log (docs/contract.md §7): one row per admin change, added to the change's transaction."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from admin_app.extensions import db
from admin_app.services import ServiceError
from common.models import AuditEntry, User, iso, utcnow

AUDIT_PAGE_MAX = 500


def _plain(value: Any) -> Any:
    """A value as JSON can hold it (times as ISO 8601 UTC)."""
    return iso(value) if isinstance(value, datetime) else value


def record(actor: User | str | None, action: str, target: str | None, changes: dict[str, Any]) -> AuditEntry:
    """Add an audit row to the session; the caller's commit writes it with the change itself."""
    name = actor.username if isinstance(actor, User) else actor
    entry = AuditEntry(
        at=utcnow(),
        actor=name,
        action=action,
        target=target,
        changes={field: _plain(value) for field, value in changes.items()},
    )
    db.session.add(entry)
    return entry


def diff(row: object, values: dict[str, Any]) -> dict[str, list[Any]]:
    """``{field: [old, new]}`` for the fields of ``values`` that differ from ``row``'s."""
    changed = {}
    for field, new in values.items():
        old = getattr(row, field)
        if old != new:
            changed[field] = [_plain(old), _plain(new)]
    return changed


def list_entries(
    limit: object = 100,
    before: object = None,
    *,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
) -> list[AuditEntry]:
    """Audit rows newest first: at most ``limit`` (1–500), older than the id ``before`` when given.

    Filters: ``actor`` (a username), ``action`` (``apikey.update``, or a thing alone, ``apikey``, for
    all its verbs) and ``target`` (``apikey:3``); empty means any.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= AUDIT_PAGE_MAX:
        raise ServiceError(f"limit must be a whole number from 1 to {AUDIT_PAGE_MAX}", "limit")
    query = sa.select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if before is not None:
        if isinstance(before, bool) or not isinstance(before, int) or before < 1:
            raise ServiceError("before must be the id of an audit row", "before")
        query = query.where(AuditEntry.id < before)
    if actor:
        query = query.where(AuditEntry.actor == actor.strip())
    if action:
        action = action.strip()
        query = query.where(
            AuditEntry.action == action if "." in action else AuditEntry.action.startswith(action + ".")
        )
    if target:
        query = query.where(AuditEntry.target == target.strip())
    return list(db.session.scalars(query))


def audit_value(value: Any) -> str:
    """A value of ``changes`` as JSON text for the page, escaped once (by the template): Jinja's
    ``tojson`` also escapes ``'`` and ``<`` as ``\\u0027``, which the page then showed as such."""
    return json.dumps(value, ensure_ascii=False)
