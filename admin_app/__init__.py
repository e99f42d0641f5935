"""The admin app (Flask): login, registration, the panel and the JSON admin API."""

from __future__ import annotations

import json
from datetime import timedelta

from flask import Flask, Response, request
from flask.json.provider import DefaultJSONProvider
from flask.sessions import SecureCookieSessionInterface
from werkzeug.exceptions import BadRequest
from werkzeug.routing import IntegerConverter

from admin_app.policy_form import edit_value, policy_summary
from common.db import engine_options, sqlite_engine_hooks
from common.jsondepth import JSONTooDeep, loads_limited
from common.models import MAX_ID, iso
from common.sessions import SESSION_COOKIE_NAME, SESSION_LIFETIME_SECONDS
from common.settings import ROOT, Settings
from common.sources import CREDENTIAL_HEADERS, ClassificationError, single_credential

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


class PlainJSONSessionInterface(SecureCookieSessionInterface):
    """Signed cookie sessions in plain JSON, as ``common.sessions`` reads them in the gateway."""

    serializer = json


class DepthLimitedJSONProvider(DefaultJSONProvider):
    """Request bodies parsed with a nesting limit: too deep is a 400 with a clear message."""

    def loads(self, s: str | bytes, **kwargs):
        """Parse like Flask, refusing documents nested deeper than 64 levels."""
        try:
            return loads_limited(s)
        except JSONTooDeep as exc:
            # A ValueError would be hidden by get_json(silent=True); this reaches the error handler.
            raise BadRequest(str(exc)) from None


class RowIdConverter(IntegerConverter):
    """``<int:...>`` in a path: an id past any row's is a 400 naming it, not a 404 or an overflow (§16)."""

    def to_python(self, value: str) -> int:
        """The id, or :class:`BadRequest` when no database could hold it."""
        row_id = int(value)
        if row_id > MAX_ID:
            raise BadRequest(f"id {value[:40]} is out of range (ids are below 2^63)")
        return row_id


def create_app(test_config: dict | None = None, *, settings: Settings | None = None) -> Flask:
    """Build the admin app from settings (``SEADRAGON_*`` env when not given)."""
    settings = settings or Settings.from_env()
    app = Flask(__name__, template_folder=str(ROOT / "templates"), static_folder=str(ROOT / "static"))
    app.json = DepthLimitedJSONProvider(app)
    app.url_map.converters["int"] = RowIdConverter
    app.config.from_mapping(
        SECRET_KEY=settings.secret_key,
        SEADRAGON=settings,
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(settings.database_url),
        SESSION_COOKIE_NAME=SESSION_COOKIE_NAME,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.https,
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=SESSION_LIFETIME_SECONDS),
        # A panel left open keeps working as long as its session does.
        WTF_CSRF_TIME_LIMIT=SESSION_LIFETIME_SECONDS,
        MAX_CONTENT_LENGTH=1024 * 1024,
        PREFERRED_URL_SCHEME="https" if settings.https else "http",
    )
    if test_config:
        app.config.from_mapping(test_config)
    app.session_interface = PlainJSONSessionInterface()
    _init_extensions(app)
    _register_blueprints(app)
    app.before_request(_refuse_repeated_credentials)
    app.after_request(_secure_headers)
    app.jinja_env.filters["when"] = _when
    app.jinja_env.globals.update(edit_value=edit_value, policy_summary=policy_summary)
    return app


def _init_extensions(app: Flask) -> None:
    from admin_app.extensions import csrf, db, login_manager
    from admin_app.identity import Anonymous

    db.init_app(app)
    with app.app_context():
        sqlite_engine_hooks(db.engine)
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to see that page."
    login_manager.login_message_category = "info"
    login_manager.anonymous_user = Anonymous


def _register_blueprints(app: Flask) -> None:
    from admin_app import (
        account_api,
        api,
        apikeys,
        audit,
        auth,
        chat,
        dashboard,
        docs,
        home,
        models_page,
        password_reset,
        requests_log,
        tokens,
        users,
        whitelist,
    )
    from admin_app.cli import register_commands
    from admin_app.errors import register_error_handlers

    modules = (
        auth,
        dashboard,
        whitelist,
        tokens,
        apikeys,
        users,
        audit,
        requests_log,
        models_page,
        api,
        docs,
        chat,
        home,
        account_api,
        password_reset,
    )
    for module in modules:
        app.register_blueprint(module.bp)
    register_error_handlers(app)
    register_commands(app)


def _refuse_repeated_credentials():
    """400 when X-API-Key or Authorization comes twice (Flask would read the first)."""
    try:
        for header in CREDENTIAL_HEADERS:
            single_credential(request.headers.getlist(header), header)
    except ClassificationError as exc:
        return {"error": exc.message}, exc.status
    return None


def _secure_headers(response: Response) -> Response:
    """Security headers on every admin response; pages are never cached."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint != "static":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _when(value) -> str:
    """A timestamp as the panel shows it: ``2026-11-27 14:05 UTC``."""
    text = iso(value)
    return text[:16].replace("T", " ") + " UTC" if text else "—"
