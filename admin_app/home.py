"""``/account``: a signed-in person's home — the chat, the API addresses, their own usage (§9)."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, current_app, render_template
from flask_login import current_user, login_required

from admin_app.extensions import db
from common.models import utcnow
from common.usage import usage_of_user

bp = Blueprint("home", __name__)

USAGE_WINDOWS = (("Last 24 hours", timedelta(hours=24)), ("Last 7 days", timedelta(days=7)))


@bp.get("/account")
@login_required
def account():
    """Links to the chat, the API base URLs with a copyable example, and the user's usage."""
    now = utcnow()
    usage = [(label, usage_of_user(db.session, current_user.id, now - span)) for label, span in USAGE_WINDOWS]
    # Never the request's Host: PUBLIC_URL when set, else the page fills in its own origin.
    public_url = current_app.config["SEADRAGON"].public_url
    return render_template("account/index.html", usage=usage, public_url=public_url)
