"""Sign in, sign out, sign up, change password, and bearer tokens for scripts."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, logout_user

from admin_app import accounts
from admin_app.extensions import csrf, db
from admin_app.forms import LoginForm, PasswordForm, RegisterForm, apply_error
from admin_app.identity import client_ip, home_url, start_session
from admin_app.services import ServiceError

bp = Blueprint("auth", __name__, url_prefix="/auth")


def _safe_next(target: str | None) -> str | None:
    """Only a path on this site, else ``None`` (the default page): never another host."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    # Browsers drop tabs and newlines from URLs ("/\t/evil" is "//evil") and read
    # "\" as "/"; CR/LF would also break the Location header.
    if "\\" in target or any(char <= " " or char == "\x7f" for char in target):
        return None
    try:
        parts = urlsplit(target)
    except ValueError:
        return None
    if parts.scheme or parts.netloc:
        return None
    return target


@bp.route("/login", methods=["GET", "POST"])
def login():
    """The sign-in form; five failures in 15 minutes per account or address lock it."""
    form = LoginForm()
    if request.method == "GET" and current_user.is_authenticated:
        return redirect(home_url())
    status, headers = 200, {}
    if form.validate_on_submit():
        try:
            user = accounts.authenticate(form.username.data, form.password.data, client_ip())
        except accounts.LockedOut as exc:
            flash(exc.message, "error")
            status, headers = 429, {"Retry-After": str(exc.retry_after)}
        except accounts.LoginFailed as exc:
            flash(exc.message, "error")
            status = 401
        else:
            start_session(user)
            return redirect(_safe_next(request.args.get("next")) or home_url())
    elif request.method == "POST":
        status = 400
    return render_template("auth/login.html", form=form), status, headers


@bp.post("/logout")
def logout():
    """Sign out: this ends every session and access token of the account."""
    if current_user.is_authenticated:
        accounts.end_sessions(current_user.user)
        db.session.commit()
    logout_user()
    session.clear()
    flash("You are signed out.", "success")
    return redirect(url_for("auth.login"))


@bp.route("/register", methods=["GET", "POST"])
def register():
    """Sign up with a registration token (``?token=`` fills it in)."""
    form = RegisterForm()
    if request.method == "GET" and request.args.get("token", "").strip():
        # A used, expired or revoked link says so at once, instead of a form that cannot succeed.
        problem = accounts.invitation_problem(request.args["token"])
        if problem is not None:
            return render_template("auth/register.html", form=form, problem=problem), 410
        form.token.data = request.args["token"]
    status = 200
    if form.validate_on_submit():
        try:
            user = accounts.register(form.token.data, form.username.data, form.password.data)
        except ServiceError as exc:
            apply_error(form, exc)
            status = 400
        else:
            start_session(user)
            flash(f"Welcome, {user.username}! Your account is ready.", "success")
            return redirect(home_url())
    elif request.method == "POST":
        status = 400
    return render_template("auth/register.html", form=form), status


@bp.route("/account", methods=["GET", "POST"])
@login_required
def account():
    """One's own account: change the password (other sessions end)."""
    form = PasswordForm()
    status = 200
    if form.validate_on_submit():
        try:
            user = accounts.change_password(
                current_user.user, form.current_password.data, form.new_password.data
            )
        except ServiceError as exc:
            apply_error(form, exc)
            status = 400
        else:
            start_session(user)  # this browser stays signed in; every other session ends
            flash("Password changed. Every other session and access token has been signed out.", "success")
            return redirect(url_for("auth.account"))
    elif request.method == "POST":
        status = 400
    return render_template("auth/account.html", form=form), status


@bp.post("/token")
@csrf.exempt
def token():
    """JSON ``{username, password}`` → a bearer access token for scripts and the web chat."""
    data = request.get_json(force=True, silent=True)
    if not isinstance(data, dict):
        return {"error": 'expected a JSON object {"username": ..., "password": ...}'}, 400
    for field in ("username", "password"):
        if not isinstance(data.get(field), str) or not data[field]:
            return {"error": f"{field} is required (a non-empty string)"}, 400
    try:
        user = accounts.authenticate(data["username"], data["password"], client_ip())
    except accounts.LockedOut as exc:
        return {"error": exc.message}, 429, {"Retry-After": str(exc.retry_after)}
    except accounts.LoginFailed as exc:
        return {"error": exc.message}, 401
    ttl = current_app.config["SEADRAGON"].access_token_ttl
    secret = accounts.issue_access_token(user, ttl)
    return {"access_token": secret, "token_type": "bearer", "expires_in": ttl}, 200
