"""The gateway (Quart): the Ollama- and OpenAI-compatible surface."""

from __future__ import annotations

from pathlib import Path

import httpx
from quart import Quart

from common.settings import Settings
from proxy_app import chat_stream, models_admin, monitor, pages, queue_admin, views
from proxy_app import gateway as gateway_module
from proxy_app.cors import install_cors
from proxy_app.errors import register_error_handlers
from proxy_app.gateway import GatewayOptions
from proxy_app.identity_cache import REFRESH_INTERVAL
from proxy_app.log_retention import PRUNE_INTERVAL

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


class GatewayApp(Quart):
    """The Quart app of the gateway, told by the launcher when shutdown starts."""

    async def begin_shutdown(self) -> None:
        """Fail waiting requests and start the streams' grace (docs/contract.md §10)."""
        await gateway_module.begin_shutdown(self)


def create_app(
    test_config: dict | None = None,
    *,
    settings: Settings | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Quart:
    """Build the gateway; ``transport`` replaces the upstream network in tests.

    ``test_config`` may set ``SEADRAGON_IDENTITY_REFRESH`` and
    ``SEADRAGON_HEALTH_INTERVAL`` and ``SEADRAGON_PRUNE_INTERVAL`` (seconds) besides Quart's own keys.
    """
    settings = settings or Settings.from_env()
    # The pages it renders (the browser's 404) live with the admin app's, in the top-level templates/.
    app = GatewayApp(__name__, template_folder=str(TEMPLATES), static_folder=None)
    app.config.from_mapping(
        SEADRAGON=settings,
        # Bodies are limited by the views themselves (MAX_BODY), so that an
        # admin's model upload to /api/blobs can stream through unbuffered.
        MAX_CONTENT_LENGTH=None,
        SEADRAGON_IDENTITY_REFRESH=REFRESH_INTERVAL,
        SEADRAGON_PRUNE_INTERVAL=PRUNE_INTERVAL,
    )
    if test_config:
        app.config.from_mapping(test_config)
    # /api//pull must be a 404, not a redirect to /api/pull.
    app.url_map.merge_slashes = False

    app.register_blueprint(views.bp)
    app.register_blueprint(monitor.bp)
    for browser_side in (chat_stream.bp, pages.bp):  # the web chat's answers; pages for browsers (§9)
        app.register_blueprint(browser_side)
    app.register_blueprint(queue_admin.bp)
    app.register_blueprint(models_admin.bp)
    register_error_handlers(app)
    install_cors(app, settings.cors_origins)
    gateway_module.install(
        app,
        GatewayOptions(
            settings,
            transport=transport,
            identity_refresh=app.config["SEADRAGON_IDENTITY_REFRESH"],
            health_interval=app.config.get("SEADRAGON_HEALTH_INTERVAL"),
            prune_interval=app.config["SEADRAGON_PRUNE_INTERVAL"],
        ),
    )
    return app
