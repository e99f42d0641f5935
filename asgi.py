"""ASGI entry point: the whole gateway on one base URL.

``python asgi.py`` prepares the database, starts the bundled Ollama simulator
when no Ollama answers, and serves on ``SEADRAGON_HOST:SEADRAGON_PORT``.
Any ASGI server can serve ``asgi:app`` instead (its proxy-header handling off).
"""

from __future__ import annotations

import sys

from a2wsgi import WSGIMiddleware

from admin_app import create_app as create_admin_app
from common.access_log import AccessLog, AccessLogMiddleware
from common.dispatch import PathDispatch, is_proxied_path
from common.settings import ConfigError, Settings
from common.whole_body import WholeBody
from proxy_app import create_app as create_proxy_app


def build_app(settings: Settings | None = None) -> AccessLogMiddleware:
    """The gateway (Quart) with the admin app (Flask) mounted on its paths."""
    settings = settings or load_settings()
    admin = create_admin_app(settings=settings)
    gateway = create_proxy_app(settings=settings)
    # Flask runs in a thread pool so slow admin work never blocks the event loop.
    app = PathDispatch(gateway, WSGIMiddleware(admin, workers=8))
    # Every body but a proxied request's (the gateway reads those itself) is read whole on the event
    # loop before the app sees it: no Flask worker thread ever waits on a client (docs/contract.md §16).
    app = WholeBody(app, max_body=settings.max_body, timeout=settings.body_timeout, streamed=is_proxied_path)
    # Proxied requests write their access-log line when they end (Gateway.finish); this writes the rest's.
    return AccessLogMiddleware(app, AccessLog(settings.access_log), is_proxied_path, settings.trusted_proxies)


def load_settings() -> Settings:
    """Settings from the environment, or exit with the one line that names the variable."""
    try:
        return Settings.from_env()
    except ConfigError as exc:
        sys.exit(f"seadragon: configuration error: {exc}")


def main() -> None:
    """Run the whole service (what the README's run command does)."""
    from common.launcher import launch

    launch(build_app)


if __name__ == "__main__":
    main()
else:
    app = build_app()
