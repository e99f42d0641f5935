"""Policies, audit and the request-log cursor on PostgreSQL: migrations 0003/0004, JSON and BigInteger."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa

from admin_app import create_app
from admin_app.extensions import db
from common.bootstrap import create_user
from common.db import upgrade
from common.models import RequestLog, utcnow
from common.settings import Settings
from tests.admin.helpers import PASSWORDS, bearer_token
from tests.conftest import require_service, settings_env

pytestmark = pytest.mark.scaleout


@pytest.fixture
def pg_app(tmp_path) -> Iterator:
    """The admin app on a PostgreSQL database of its own, migrated, with alice as admin."""
    server = require_service("SEADRAGON_TEST_POSTGRES_URL")
    name = "seadragon_" + secrets.token_hex(6)
    admin = sa.create_engine(
        server.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    settings = Settings.from_env(settings_env(tmp_path, database_url=server.rsplit("/", 1)[0] + "/" + name))
    upgrade(settings.database_url)
    app = create_app({"TESTING": True, "WTF_CSRF_ENABLED": False}, settings=settings)
    with app.app_context():
        create_user(db.session, "alice", PASSWORDS["alice"], is_admin=True)
        db.session.commit()
    yield app
    with app.app_context():
        db.engine.dispose()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_policies_audit_and_cursor_paging_work_on_postgresql(pg_app):
    client = pg_app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {bearer_token(client, 'alice')}"
    key = client.post("/api/admin/apikeys", json={"name": "k", "priority": 1}).get_json()
    patch = {"models": ["qwen*"], "daily_tokens": 10**12, "expires_at": "2030-01-01T00:00:00Z"}
    response = client.patch(f"/api/admin/apikeys/{key['id']}", json=patch)
    assert response.status_code == 200 and response.get_json()["daily_tokens"] == 10**12
    assert client.get("/api/admin/audit").get_json()[0]["changes"]["models"] == [None, ["qwen*"]]
    now = utcnow()
    with pg_app.app_context():
        rows = [
            {
                "request_id": f"r{n:02d}",
                "created_at": now - timedelta(microseconds=n // 2),  # pairs share a timestamp
                "method": "POST",
                "endpoint": "/api/chat",
                "status": 200,
            }
            for n in range(9)
        ]
        db.session.execute(sa.insert(RequestLog), rows)
        db.session.commit()
    seen, cursor = [], ""
    while cursor is not None:
        body = client.get(f"/api/admin/requests?limit=4&cursor={cursor}").get_json()
        seen += [row["request_id"] for row in body["requests"]]
        cursor = body["next_cursor"]
    assert sorted(seen) == [f"r{n:02d}" for n in range(9)]


def test_ids_are_never_reused_on_postgresql_and_migration_0009_changes_nothing_there(pg_app):
    # docs/contract.md §16: PostgreSQL's sequences never repeat; 0009 rebuilds only SQLite tables.
    with pg_app.app_context():
        assert db.session.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() >= "0009"
    client = pg_app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {bearer_token(client, 'alice')}"
    first = client.post("/api/admin/whitelist", json={"ip": "10.9.0.1", "priority": 5}).get_json()["id"]
    assert client.delete(f"/api/admin/whitelist/{first}").status_code == 200
    second = client.post("/api/admin/whitelist", json={"ip": "10.9.0.2", "priority": 5}).get_json()["id"]
    assert second != first
