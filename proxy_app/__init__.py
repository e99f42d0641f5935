"""The gateway (Quart): the Ollama- and OpenAI-compatible surface."""

from __future__ import annotations

import httpx
from quart import Quart

from common.settings import Settings


def create_app(
    test_config: dict | None = None,
    *,
    settings: Settings | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Quart:
    """Build the gateway; ``transport`` replaces the upstream network in tests."""
    settings = settings or Settings.from_env()
    app = Quart(__name__)
    app.config.from_mapping(SEADRAGON=settings)
    if test_config:
        app.config.from_mapping(test_config)

    @app.get("/")
    async def index() -> dict:
        """Who answers here."""
        return {"message": "Seadragon LLM Server"}

    return app
