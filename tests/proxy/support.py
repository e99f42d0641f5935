"""Test helpers for the gateway: a real server in a thread, accounts in the database, wire parsing."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import sqlalchemy as sa
import uvicorn

from admin_app import create_app as create_admin_app
from common.bootstrap import create_user
from common.db import make_sessionmaker, make_sync_engine
from common.models import APIKey, ModelProfileRow, RequestLog, User, WhitelistEntry, utcnow
from common.network import network_text, normalise_network
from common.security import display_prefix, hash_secret, new_api_key
from common.sessions import SESSION_COOKIE_NAME
from common.settings import Settings
from proxy_app import create_app
from proxy_app.gateway import EXTENSION, Gateway

PASSWORD = "correct horse battery staple"
META_TOKEN = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
QUESTION = [{"role": "user", "content": "Why is the sea blue?"}]


class Accounts:
    """Keys, whitelist entries and users written straight to the gateway's database."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_sync_engine(settings.database_url)
        self.sessions = make_sessionmaker(self.engine)

    def key(self, name: str = "app", priority: int = 5) -> str:
        """A new active API key; returns the secret."""
        secret = new_api_key()
        with self.sessions.begin() as session:
            session.add(
                APIKey(
                    name=name, key_hash=hash_secret(secret), prefix=display_prefix(secret), priority=priority
                )
            )
        return secret

    def revoke_key(self, secret: str) -> None:
        """Revoke a key the way the admin API does."""
        with self.sessions.begin() as session:
            session.execute(
                sa.update(APIKey)
                .where(APIKey.key_hash == hash_secret(secret))
                .values(is_active=False, revoked_at=utcnow())
            )

    def key_last_used(self, secret: str):
        """The stored ``last_used`` of a key."""
        with self.sessions() as session:
            return session.scalar(sa.select(APIKey.last_used).where(APIKey.key_hash == hash_secret(secret)))

    def whitelist(self, ip: str, priority: int | None = None) -> int:
        """Whitelist an IP or CIDR; returns the entry id."""
        with self.sessions.begin() as session:
            entry = WhitelistEntry(
                ip=network_text(normalise_network(ip)),
                label="test",
                priority=self.settings.direct_priority if priority is None else priority,
            )
            session.add(entry)
            session.flush()
            return entry.id

    def unwhitelist(self, entry_id: int) -> None:
        """Remove a whitelist entry."""
        with self.sessions.begin() as session:
            session.execute(sa.delete(WhitelistEntry).where(WhitelistEntry.id == entry_id))

    def user(self, username: str, *, admin: bool = False) -> int:
        """A new active user with :data:`PASSWORD`; returns the id."""
        with self.sessions.begin() as session:
            user = create_user(session, username, PASSWORD, is_admin=admin)
            session.flush()
            return user.id

    def end_sessions(self, user_id: int) -> None:
        """Bump the session version: every session and access token of the user ends."""
        with self.sessions.begin() as session:
            session.execute(
                sa.update(User).where(User.id == user_id).values(session_version=User.session_version + 1)
            )

    def close(self) -> None:
        """Release the engine."""
        self.engine.dispose()


class AdminApp:
    """The real admin app (Flask) on the same database: it issues cookies and access tokens."""

    def __init__(self, settings: Settings) -> None:
        self.app = create_admin_app({"TESTING": True, "WTF_CSRF_ENABLED": False}, settings=settings)

    def session_cookie(self, username: str) -> str:
        """Log in through the form; the ``seadragon_session`` cookie it sets."""
        client = self.app.test_client()
        response = client.post("/auth/login", data={"username": username, "password": PASSWORD})
        assert response.status_code in (302, 303), response.get_data(as_text=True)
        cookie = client.get_cookie(SESSION_COOKIE_NAME)
        assert cookie is not None
        return cookie.value

    def access_token(self, username: str) -> str:
        """A bearer access token from ``POST /auth/token``."""
        response = self.app.test_client().post(
            "/auth/token", json={"username": username, "password": PASSWORD}
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()["access_token"]


class Browser:
    """A signed-in person's session cookie and the chat page's CSRF token."""

    def __init__(self, admin: AdminApp, username: str) -> None:
        client = admin.app.test_client()
        response = client.post("/auth/login", data={"username": username, "password": PASSWORD})
        assert response.status_code == 302
        self.csrf = META_TOKEN.search(client.get("/chat").get_data(as_text=True)).group(1)
        self.cookie = client.get_cookie(SESSION_COOKIE_NAME).value
        self.client = client

    def new_conversation(self) -> int:
        """Start a conversation through the admin app's chat API."""
        response = self.client.post("/chat/api/conversations", json={}, headers={"X-CSRFToken": self.csrf})
        assert response.status_code == 201
        return response.get_json()["id"]

    def headers(self, csrf: str | None = None) -> dict[str, str]:
        """Cookie and CSRF headers as the chat page sends them."""
        return {"Cookie": f"{SESSION_COOKIE_NAME}={self.cookie}", "X-CSRFToken": csrf or self.csrf}


class GatewayServer:
    """``proxy_app.create_app`` served by uvicorn on a free port in a background thread."""

    def __init__(self, settings: Settings, test_config: dict | None = None) -> None:
        self.settings = settings
        self.app = create_app(test_config, settings=settings)
        self.loop: asyncio.AbstractEventLoop | None = None

        @self.app.before_serving
        async def remember_loop() -> None:
            self.loop = asyncio.get_running_loop()

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self.app,
            ws="none",
            lifespan="on",
            log_config=None,
            log_level="warning",
            access_log=False,
            proxy_headers=False,
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> GatewayServer:
        """Serve, and return once start-up (database, backends) is done."""
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.01)
        return self

    @property
    def gateway(self) -> Gateway:
        """The running gateway's state."""
        return self.app.extensions[EXTENSION]

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server's event loop (where the scheduler lives) and return its result."""
        assert self.loop is not None
        future: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the test thread
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return future.result(5)

    def snapshot(self) -> dict:
        """The scheduler's snapshot, read on the server's loop."""
        return self.call(lambda: self.gateway.scheduler.snapshot())

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float = 5.0) -> dict:
        """Poll the scheduler snapshot until ``predicate`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            snapshot = self.snapshot()
            if predicate(snapshot):
                return snapshot
            if time.monotonic() > deadline:
                raise TimeoutError(f"gateway state never matched: {snapshot}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Shut down (lifespan shut-down included) and close the socket."""
        if self.thread.is_alive():
            self.server.should_exit = True
            self.thread.join(10)
            if self.thread.is_alive():
                self.server.force_exit = True
                self.thread.join(5)
        self.sock.close()


def log_rows(settings: Settings) -> list:
    """Every request-log row, oldest first."""
    engine = make_sync_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.select(RequestLog).order_by(RequestLog.id)))
    finally:
        engine.dispose()


def cookie_header(cookie: str) -> dict[str, str]:
    """The ``Cookie`` header carrying an admin-app session."""
    return {"Cookie": f"{SESSION_COOKIE_NAME}={cookie}"}


def chat_body(model: str = "llama3.2", **extra: Any) -> dict[str, Any]:
    """A minimal chat request."""
    return {"model": model, "messages": QUESTION, **extra}


def ndjson(body: bytes | str) -> list[dict[str, Any]]:
    """The objects of an NDJSON body."""
    text = body.decode() if isinstance(body, bytes) else body
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def sse_events(body: bytes | str) -> list[str]:
    """The events of an SSE body (comments included), in order."""
    text = body.decode() if isinstance(body, bytes) else body
    return [event for event in text.split("\n\n") if event.strip()]


_CLOCK_FIELDS = re.compile(
    rb'"([a-z_]*_at|created|id|item_id|system_fingerprint|[a-z_]*duration)":("[^"]*"|\d+)'
)


def without_clock(body: bytes) -> bytes:
    """A body with its time stamps, durations and generated ids blanked, for byte comparison."""
    return _CLOCK_FIELDS.sub(rb'"\1":_', body)


def client(base_url: str, **headers: str) -> httpx.Client:
    """An httpx client on the gateway with generous timeouts."""
    return httpx.Client(base_url=base_url, headers=headers, timeout=30)


def store_profile(settings, model: str, **fields) -> None:
    """Write a profile row as the admin app stores it."""
    engine = make_sync_engine(settings.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.delete(ModelProfileRow).where(ModelProfileRow.model == model))
            conn.execute(
                sa.insert(ModelProfileRow).values(**{"model": model, "load_options": "client", **fields})
            )
    finally:
        engine.dispose()
