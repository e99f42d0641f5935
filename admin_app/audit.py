"""The audit page: every admin change, newest first (docs/contract.md §7)."""

from __future__ import annotations

from flask import render_template, request

from admin_app.identity import admin_blueprint
from admin_app.services import ServiceError
from admin_app.services.audit import list_entries

bp = admin_blueprint("audit", __name__, "/admin/audit")
PER_PAGE = 100


@bp.get("/")
def index():
    """Audit rows newest first, a hundred at a time (``?before=<id>`` for older ones)."""
    before = request.args.get("before", "")
    try:
        entries = list_entries(PER_PAGE + 1, int(before) if before.isascii() and before.isdigit() else None)
    except ServiceError:
        entries = []
    older = entries[PER_PAGE - 1].id if len(entries) > PER_PAGE else None
    return render_template("audit/index.html", entries=entries[:PER_PAGE], older=older)
