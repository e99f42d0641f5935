"""The users page: enable, disable, promote, demote."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_login import current_user

from admin_app.forms import ActionForm
from admin_app.identity import admin_blueprint
from admin_app.requests_log import usage_summary
from admin_app.services import ServiceError
from admin_app.services import users as service

bp = admin_blueprint("users", __name__, "/admin/users")

ACTIONS = {
    "disable": ({"is_active": False}, "{} is disabled and signed out."),
    "enable": ({"is_active": True}, "{} is enabled."),
    "promote": ({"is_admin": True}, "{} is now an administrator."),
    "demote": ({"is_admin": False}, "{} is no longer an administrator."),
}


@bp.get("/")
def index():
    """List every account with its role, state, last sign-in and usage over 24 hours and 7 days."""
    users = service.list_users()
    return render_template("users/index.html", users=users, action=ActionForm(), usage=usage_summary("user"))


@bp.post("/<int:user_id>/<any(disable, enable, promote, demote):verb>")
def change(user_id: int, verb: str):
    """Apply one action to one user; nobody demotes or disables themselves."""
    patch, done = ACTIONS[verb]
    try:
        user = service.update_user(user_id, patch, current_user.user)
    except ServiceError as exc:
        flash(exc.message, "error")
    else:
        flash(done.format(user.username), "success")
    return redirect(url_for("users.index"))
