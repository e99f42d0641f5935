"""No key, token or password is ever written to the database in plaintext."""

from __future__ import annotations

from pathlib import Path

from admin_app.extensions import db
from common.security import hash_secret
from tests.admin.helpers import bearer_token, login


def _database_bytes(app) -> bytes:
    with app.app_context():
        db.engine.dispose()  # close connections so nothing waits in memory only
    path = Path(app.config["SEADRAGON"].database_url.split("///", 1)[1])
    return b"".join(file.read_bytes() for file in path.parent.glob(path.name + "*"))


def test_the_database_file_holds_no_secret_in_plaintext(app, admin_client):
    key = admin_client.post("/api/admin/apikeys", json={"name": "bot", "priority": 1}).get_json()["key"]
    token = admin_client.post("/api/admin/tokens").get_json()["token"]
    password = "dave-secret-password"
    signup = app.test_client()
    response = signup.post("/auth/register", data={"token": token, "username": "dave", "password": password})
    assert response.status_code == 302
    access = bearer_token(app.test_client(), "dave", password)
    assert login(app.test_client(), "dave", password).status_code == 302

    stored = _database_bytes(app)
    assert b"dave" in stored  # the file really is the one the app wrote to
    assert hash_secret(key).encode() in stored
    for secret in (key, token, password, access, "alice-password-1"):
        assert secret.encode() not in stored, secret[:4]
    for secret in (key, token, access):
        assert secret[12:].encode() not in stored  # not even the part past the displayed prefix


def test_a_password_typed_into_the_username_field_is_not_stored(app, client):
    client.post("/auth/login", data={"username": "my-secret-password", "password": "oops"})
    assert b"my-secret-password" not in _database_bytes(app)
