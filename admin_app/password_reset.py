"""``/auth/reset``: a user sets a new password with an admin's single-use link (docs/contract.md §14)."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request

from admin_app.forms import ResetPasswordForm, apply_error
from admin_app.identity import home_url, start_session
from admin_app.services import ServiceError
from admin_app.services import password_resets as service

bp = Blueprint("password_reset", __name__, url_prefix="/auth")


@bp.route("/reset", methods=["GET", "POST"])
def page():
    """The form for a new password (``?token=`` from the link); a spent link says why (410)."""
    form = ResetPasswordForm()
    token = (request.values.get("token") or "").strip()
    problem = service.reset_problem(token) if token else service.PROBLEMS["unknown"]
    if problem is not None:
        return render_template("auth/reset.html", form=form, problem=problem), 410
    status = 200
    if form.validate_on_submit():
        try:
            user = service.use_reset(token, form.new_password.data)
        except ServiceError as exc:
            if exc.field == "token":
                return render_template("auth/reset.html", form=form, problem=exc.message), 410
            apply_error(form, exc)
            status = 400
        else:
            start_session(user)  # this browser is signed in; every other session has ended
            flash("Your new password is set. Every other session has been signed out.", "success")
            return redirect(home_url())
    elif request.method == "POST":
        status = 400
    return render_template("auth/reset.html", form=form, token=token), status
