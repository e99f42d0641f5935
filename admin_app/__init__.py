"""The admin app (Flask): login, registration, the panel and the JSON admin API."""

from __future__ import annotations

from flask import Flask

from common.settings import Settings


def create_app(test_config: dict | None = None, *, settings: Settings | None = None) -> Flask:
    """Build the admin app from settings (``SEADRAGON_*`` env when not given)."""
    settings = settings or Settings.from_env()
    app = Flask(__name__, template_folder="../templates", static_folder="../static")
    app.config.from_mapping(SECRET_KEY=settings.secret_key, SEADRAGON=settings)
    if test_config:
        app.config.from_mapping(test_config)
    return app
