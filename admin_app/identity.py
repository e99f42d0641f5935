"""Who is signed in: the Flask-Login glue, the admin guard and the client's address."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, redirect, request, session, url_for
from flask_login import AnonymousUserMixin, current_user, login_user

from admin_app.extensions import db, login_manager
from common.models import User
from common.network import resolve_client_ip
from common.sessions import parse_user_reference, user_reference


class SessionUser:
    """A :class:`common.models.User` as Flask-Login wants it (the model stays framework-free)."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, user: User) -> None:
        self.user = user

    @property
    def is_active(self) -> bool:
        """Disabled users cannot sign in."""
        return bool(self.user.is_active)

    def get_id(self) -> str:
        """``id:session_version``: bumping the version ends this session."""
        return user_reference(self.user.id, self.user.session_version)

    def __getattr__(self, name: str):
        return getattr(self.user, name)


class Anonymous(AnonymousUserMixin):
    """Nobody signed in; templates may still ask ``is_admin``."""

    is_admin = False
    username = None


@login_manager.user_loader
def load_user(reference: str) -> SessionUser | None:
    """The signed-in user, if the session's version is still the user's current one."""
    parsed = parse_user_reference(reference)
    if parsed is None:
        return None
    user_id, version = parsed
    user = db.session.get(User, user_id)
    if user is None or not user.is_active or user.session_version != version:
        return None
    return SessionUser(user)


def start_session(user: User) -> None:
    """Sign ``user`` in on a fresh session (no state carried over from before login)."""
    session.clear()
    login_user(SessionUser(user))
    session.permanent = True


def client_ip() -> str:
    """The client's address, believing ``X-Forwarded-For`` only from trusted proxies."""
    settings = current_app.config["SEADRAGON"]
    address = resolve_client_ip(
        request.remote_addr, request.headers.get("X-Forwarded-For"), settings.trusted_proxies
    )
    return str(address) if address is not None else (request.remote_addr or "unknown")


def home_url() -> str:
    """Where a signed-in user belongs: the panel for admins, their home page (§9) for others."""
    return url_for("dashboard.index") if current_user.is_admin else url_for("home.account")


def require_admin():
    """Before-request guard of every panel page: sign in first, and be an admin."""
    if not current_user.is_authenticated:
        target = request.full_path.rstrip("?") if request.method == "GET" else None
        return redirect(url_for("auth.login", next=target))
    if not current_user.is_admin:
        abort(403)
    return None


def admin_blueprint(name: str, import_name: str, url_prefix: str) -> Blueprint:
    """A panel blueprint whose every view requires an admin."""
    blueprint = Blueprint(name, import_name, url_prefix=url_prefix)
    blueprint.before_request(require_admin)
    return blueprint
