"""``/account``: a signed-in person's home — the chat, usage and limits, API keys (§9, §14)."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template
from flask_login import current_user, login_required

from admin_app.extensions import db
from common.own_usage import own_usage

bp = Blueprint("home", __name__)


@bp.get("/account")
@login_required
def account():
    """The chat, the user's usage and limits, personal API keys (docs/contract.md §14), the API URLs."""
    settings = current_app.config["SEADRAGON"]
    usage = own_usage(db.session, current_user.user, settings)
    # Never the request's Host: PUBLIC_URL when set, else the page fills in its own origin.
    return render_template(
        "account/index.html", usage=usage, public_url=settings.public_url, max_keys=settings.user_max_keys
    )
