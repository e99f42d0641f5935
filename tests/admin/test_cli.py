"""``flask init-db`` and ``flask create-admin``, non-interactively and with prompts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import sqlalchemy as sa

from admin_app.extensions import db
from common.models import User
from common.security import verify_password
from common.settings import ROOT, Settings
from tests.admin.helpers import login
from tests.conftest import settings_env


def _user(app, username: str) -> User | None:
    with app.app_context():
        return db.session.scalar(sa.select(User).where(User.username == username))


def test_init_db_creates_the_schema_on_an_empty_database(app_factory, tmp_path):
    fresh = Settings.from_env(settings_env(tmp_path / "fresh"))
    app = app_factory(fresh)
    result = app.test_cli_runner().invoke(args=["init-db"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert "users" in sa.inspect(db.engine).get_table_names()
    # Running it again is harmless and keeps the data.
    app.test_cli_runner().invoke(args=["create-admin", "root", "--password", "root-password"])
    assert app.test_cli_runner().invoke(args=["init-db"]).exit_code == 0
    assert _user(app, "root") is not None


def test_create_admin_creates_an_administrator(app):
    result = app.test_cli_runner().invoke(args=["create-admin", "root", "--password", "root-password"])
    assert result.exit_code == 0 and "Created the administrator 'root'" in result.output
    user = _user(app, "root")
    assert user.is_admin and user.is_active and verify_password(user.password_hash, "root-password")
    assert "root-password" not in user.password_hash


def test_create_admin_promotes_and_resets_an_existing_user(app, make_user):
    make_user("bob", active=False)
    client = app.test_client()
    result = app.test_cli_runner().invoke(args=["create-admin", "bob", "--password", "new-bob-password"])
    assert result.exit_code == 0 and "now an active administrator" in result.output
    user = _user(app, "bob")
    assert user.is_admin and user.is_active
    assert login(client, "bob", "new-bob-password").location == "/admin/"


def test_create_admin_prompts_twice_when_the_password_is_left_out(app):
    result = app.test_cli_runner().invoke(args=["create-admin", "root"], input="prompted-pw\nprompted-pw\n")
    assert result.exit_code == 0, result.output
    assert verify_password(_user(app, "root").password_hash, "prompted-pw")


def test_create_admin_refuses_a_short_password(app):
    result = app.test_cli_runner().invoke(args=["create-admin", "root", "--password", "short"])
    assert result.exit_code != 0 and "password must be 8 to 1024 characters long" in result.output
    assert _user(app, "root") is None


@pytest.mark.slow  # several `flask` processes
def test_the_real_flask_command_line_works_non_interactively(tmp_path):
    env = {**os.environ, **settings_env(tmp_path / "cli")}
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    commands = [[*flask, "init-db"], [*flask, "create-admin", "root", "--password", "root-password"]]
    for command in commands:
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
    assert "Created the administrator 'root'" in result.stdout
