"""The users page: enable, disable, promote, demote."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_login import current_user

from admin_app import accounts
from admin_app.forms import ActionForm
from admin_app.identity import admin_blueprint
from admin_app.requests_log import usage_summary
from admin_app.services import ServiceError

bp = admin_blueprint("users", __name__, "/admin/users")

ACTIONS = {
    "disable": (lambda user_id: accounts.set_active(user_id, False), "{} is disabled and signed out."),
    "enable": (lambda user_id: accounts.set_active(user_id, True), "{} is enabled."),
    "promote": (lambda user_id: accounts.set_admin(user_id, True), "{} is now an administrator."),
    "demote": (lambda user_id: accounts.set_admin(user_id, False), "{} is no longer an administrator."),
}


@bp.get("/")
def index():
    """List every account with its role, state, last sign-in and usage over 24 hours and 7 days."""
    users = accounts.list_users()
    return render_template("users/index.html", users=users, action=ActionForm(), usage=usage_summary("user"))


@bp.post("/<int:user_id>/<any(disable, enable, promote, demote):verb>")
def change(user_id: int, verb: str):
    """Apply one action to one user; the last active administrator is protected."""
    apply, done = ACTIONS[verb]
    try:
        user = apply(user_id)
    except ServiceError as exc:
        flash(exc.message, "error")
    else:
        flash(done.format(user.username), "success")
        if user.id == current_user.id and not (user.is_admin and user.is_active):
            return redirect(url_for("auth.account"))  # no longer allowed here
    return redirect(url_for("users.index"))
