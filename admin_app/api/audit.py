"""``/api/admin/audit``: the audit log, newest first (docs/contract.md §7)."""

from __future__ import annotations

from flask import request

from admin_app.api.base import bp, query_int
from admin_app.services import audit as service
from common.models import AuditEntry, iso


def audit_json(entry: AuditEntry) -> dict:
    """``{"id", "time", "actor", "action", "target", "changes"}``."""
    return {
        "id": entry.id,
        "time": iso(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "changes": entry.changes,
    }


@bp.get("/audit")
def audit_list():
    """Audit rows newest first; ``limit`` (1–500, default 100) and ``before`` (an id) page; filters too.

    ``actor``, ``action`` (``apikey.update`` or ``apikey``) and ``target`` (``apikey:3``) narrow the list.
    """
    limit = query_int(request.args.get("limit", "100"))
    before = request.args.get("before")
    if before is not None and before.isascii() and before.isdigit() and len(before) <= 18:
        before = int(before)
    filters = {name: request.args.get(name) for name in ("actor", "action", "target")}
    entries = service.list_entries(limit, before, **filters)
    return [audit_json(entry) for entry in entries]
