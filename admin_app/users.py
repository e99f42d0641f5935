"""The users page: enable, disable, promote, demote."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, url_for
from flask_login import current_user

from admin_app.forms import ActionForm
from admin_app.identity import admin_blueprint
from admin_app.links import public_link
from admin_app.policy_form import patch_from_form, refused_edit
from admin_app.requests_log import usage_summary
from admin_app.services import NotFound, ServiceError, password_resets
from admin_app.services import users as service
from common.policies import LIMIT_FIELDS

bp = admin_blueprint("users", __name__, "/admin/users")

ACTIONS = {
    "disable": ({"is_active": False}, "{} is disabled and signed out."),
    "enable": ({"is_active": True}, "{} is enabled."),
    "promote": ({"is_admin": True}, "{} is now an administrator."),
    "demote": ({"is_admin": False}, "{} is no longer an administrator."),
}


def _page(status: int = 200, editing=None, reset=None):
    page = render_template(
        "users/index.html",
        users=service.list_users(),
        action=ActionForm(),
        usage=usage_summary("user"),
        edit_fields=LIMIT_FIELDS,
        editing=editing,
        reset=reset,
    )
    return page, status


@bp.get("/")
def index():
    """List every account with its role, state, limits, last sign-in and usage over 24 hours and 7 days."""
    return _page()


@bp.post("/<int:user_id>/edit")
def edit(user_id: int):
    """Change a user's limits in place (roles have their own buttons)."""
    try:
        user = service.update_user(user_id, patch_from_form(LIMIT_FIELDS), current_user.user)
    except NotFound as exc:
        flash(exc.message, "error")
    except ServiceError as exc:
        return _page(exc.status, editing=refused_edit(user_id, exc))
    else:
        flash(f"Saved the limits of {user.username}.", "success")
    return redirect(url_for("users.index"))


@bp.post("/<int:user_id>/password-reset")
def password_reset(user_id: int):
    """Make a single-use password-reset link and show it this once (never in a flash message)."""
    try:
        reset, secret = password_resets.create_reset(
            user_id, current_user.user, current_app.config["SEADRAGON"]
        )
    except NotFound as exc:
        flash(exc.message, "error")
        return redirect(url_for("users.index"))
    link = public_link("password_reset.page", token=secret)
    return _page(reset={"username": reset.user.username, "url": link, "expires_at": reset.expires_at})


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
