"""The admin app on a temp SQLite file, its test client, and named personas.

alice is an administrator, bob an ordinary user, carol a second administrator
(created only by tests that need two).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from itertools import count

import pytest
from flask import Flask
from flask.testing import FlaskClient

from admin_app import create_app
from admin_app.extensions import db
from common.bootstrap import create_user
from common.models import APIKey, RequestLog, User, WhitelistEntry, utcnow
from tests.admin.helpers import PASSWORDS, bearer_token, login


@pytest.fixture
def app_factory(settings) -> Callable[..., Flask]:
    """Make admin apps on the test database; CSRF is off unless asked for."""
    apps: list[Flask] = []

    def make(settings_=None, **config) -> Flask:
        app = create_app(
            {"TESTING": True, "WTF_CSRF_ENABLED": False, **config}, settings=settings_ or settings
        )
        apps.append(app)
        return app

    yield make
    for app in apps:
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def app(app_factory) -> Flask:
    """The admin app with CSRF off (the CSRF tests turn it on)."""
    return app_factory()


@pytest.fixture
def client(app) -> FlaskClient:
    """A browser-like client of ``app``."""
    return app.test_client()


@pytest.fixture
def make_user(app) -> Callable[..., User]:
    """Create a user directly in the database."""

    def make(username: str, password: str | None = None, *, admin: bool = False, active: bool = True) -> User:
        with app.app_context():
            user = create_user(db.session, username, password or PASSWORDS[username], is_admin=admin)
            user.is_active = active
            db.session.commit()
            db.session.refresh(user)
            db.session.expunge(user)
            return user

    return make


@pytest.fixture
def alice(make_user) -> User:
    """An administrator."""
    return make_user("alice", admin=True)


@pytest.fixture
def bob(make_user) -> User:
    """An ordinary user."""
    return make_user("bob")


@pytest.fixture
def admin_client(client, alice) -> FlaskClient:
    """A client signed in as alice."""
    assert login(client, "alice").status_code == 302
    return client


@pytest.fixture
def api(client, alice) -> FlaskClient:
    """alice's client, authenticated by a bearer token as scripts are."""
    token = bearer_token(client, "alice")
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


@pytest.fixture
def user_client(app, bob) -> FlaskClient:
    """A client signed in as bob (not an admin)."""
    client = app.test_client()
    assert login(client, "bob").status_code == 302
    return client


_request_ids = count()


@pytest.fixture
def log(app) -> Callable[..., str]:
    """Write request-log rows as the gateway would; ``seconds_ago`` orders them."""

    def write(seconds_ago: float = 0, **fields) -> str:
        values = {
            "request_id": f"req-{next(_request_ids)}",
            "created_at": utcnow() - timedelta(seconds=seconds_ago),
            "source": "direct_api",
            "method": "POST",
            "endpoint": "/api/chat",
            "model": "llama3.2",
            "status": 200,
        }
        values.update(fields)
        with app.app_context():
            db.session.add(RequestLog(**values))
            db.session.commit()
        return values["request_id"]

    return write


@pytest.fixture
def people(app, alice) -> dict[str, int]:
    """An API key "ci-bot", a whitelist entry "build farm", and alice (an admin who chats), by id."""
    with app.app_context():
        key = APIKey(name="ci-bot", key_hash="a" * 64, prefix="sdk_AbCd", priority=2)
        entry = WhitelistEntry(ip="10.0.0.0/24", label="build farm", priority=1)
        db.session.add_all([key, entry])
        db.session.commit()
        return {"key": key.id, "entry": entry.id, "alice": alice.id}
