"""Browser tests: Debian's Chromium driven by Playwright against the real server.

Playwright cannot download browsers here, so it launches ``/usr/bin/chromium``.
Without it the browser tests skip locally and fail in CI (``CI=true``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import settings_env
from tests.live import ROOT, LiveServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts"
ADMIN_USER = "admin"
ADMIN_PASSWORD = "admin-password-e2e"
# Nothing listens on port 9 ("discard"): the gateway starts with its backend down
# and never launches the simulator, which these tests do not need.
NO_OLLAMA = "http://127.0.0.1:9"
LAPTOP = {"width": 1366, "height": 800}


def live_env(directory: Path, **overrides) -> dict[str, str]:
    """The environment of a real gateway on its own database, with a known admin password."""
    return settings_env(
        directory, admin_user=ADMIN_USER, admin_password=ADMIN_PASSWORD, ollama_urls=NO_OLLAMA, **overrides
    )


@pytest.fixture(scope="module")
def live_server(tmp_path_factory) -> Iterator[LiveServer]:
    """One real gateway (``python asgi.py``) for the whole module."""
    server = LiveServer(live_env(tmp_path_factory.mktemp("live"))).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def chromium_path() -> Path:
    """Debian's Chromium; its absence fails CI and skips elsewhere."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium_path):
    """A headless Chromium, shared by one module's tests."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(chromium_path), args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        launched.close()


@pytest.fixture
def new_page(browser, live_server) -> Iterator[Callable[..., object]]:
    """Open pages in fresh browser contexts (separate cookies) on the live server."""
    contexts = []

    def open_page(**options):
        context = browser.new_context(base_url=live_server.url, viewport=LAPTOP, **options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def screenshot() -> Callable[[object, str], Path]:
    """Save a full-page screenshot under ``test-artifacts/`` (gitignored)."""

    def save(page, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save
