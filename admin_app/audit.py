"""The audit page: every admin change, newest first (docs/contract.md §7)."""

from __future__ import annotations

from flask import render_template, request

from admin_app.identity import admin_blueprint
from admin_app.services import ServiceError
from admin_app.services.audit import audit_value, list_entries

bp = admin_blueprint("audit", __name__, "/admin/audit")
bp.add_app_template_filter(audit_value, "audit_value")
PER_PAGE = 100
FILTERS = ("actor", "action", "target")


@bp.get("/")
def index():
    """Audit rows newest first, a hundred at a time (``?before=<id>``), filtered by actor, action, target."""
    before = request.args.get("before", "")
    filters = {name: request.args.get(name, "").strip()[:100] for name in FILTERS}
    try:
        entries = list_entries(
            PER_PAGE + 1, int(before) if before.isascii() and before.isdigit() else None, **filters
        )
    except ServiceError:
        entries = []
    older = entries[PER_PAGE - 1].id if len(entries) > PER_PAGE else None
    return render_template("audit/index.html", entries=entries[:PER_PAGE], older=older, filters=filters)
