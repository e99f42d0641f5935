"""The panel's front page: live queue numbers and charts, and what the gateway knows about."""

from __future__ import annotations

from flask import render_template

from admin_app.identity import admin_blueprint
from admin_app.requests_log import SOURCE_LABELS
from admin_app.services.dashboard import dashboard_counts

bp = admin_blueprint("dashboard", __name__, "/admin")


@bp.get("/")
def index():
    """Live cards and charts (filled from /api/admin/stats by dashboard.js) and the access counts."""
    return render_template("dashboard/index.html", counts=dashboard_counts(), sources=SOURCE_LABELS)
