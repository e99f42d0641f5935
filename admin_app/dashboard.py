"""The panel's front page: what the gateway knows about, at a glance."""

from __future__ import annotations

from flask import render_template

from admin_app import services
from admin_app.identity import admin_blueprint

bp = admin_blueprint("dashboard", __name__, "/admin")


@bp.get("/")
def index():
    """Counts of users, keys, whitelist entries and open tokens; room for live queue stats."""
    return render_template("dashboard/index.html", counts=services.dashboard_counts())
