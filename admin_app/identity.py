"""Who is signed in: the Flask-Login glue, the admin guard and the client's address."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, redirect, request, session, url_for
from flask_login import AnonymousUserMixin, current_user, login_user

from admin_app import accounts
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


class BearerRefused(Exception):
    """An ``Authorization`` header that names nobody: malformed, unknown or expired (401)."""


def bearer_user() -> User | None:
    """The user of the request's ``Authorization: Bearer`` access token; ``None`` without the header."""
    authorization = request.headers.get("Authorization")
    if authorization is None:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise BearerRefused("Authorization must be 'Bearer <access token>'")
    user = accounts.user_for_access_token(value.strip())
    if user is None:
        raise BearerRefused("invalid or expired access token")
    return user


def accepts_bearer(view):
    """Mark a panel view (a read-only GET, like the CSV export) as open to an admin's bearer token."""
    view.accepts_bearer = True
    return view


def _bearer_admin_or_refusal():
    try:
        user = bearer_user()
    except BearerRefused as exc:
        return {"error": str(exc)}, 401, {"WWW-Authenticate": 'Bearer realm="seadragon-admin"'}
    if not user.is_admin:
        return {"error": "administrators only"}, 403
    return None


def require_admin():
    """Before-request guard of every panel page: sign in first, and be an admin."""
    view = current_app.view_functions.get(request.endpoint or "")
    if "Authorization" in request.headers and getattr(view, "accepts_bearer", False):
        return _bearer_admin_or_refusal()  # scripts: no cookie, so no CSRF question either
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
