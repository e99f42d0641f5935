"""Secrets: formats, hashing strength, and the boundary of common/."""

from __future__ import annotations

import subprocess
import sys

from argon2 import extract_parameters

from common.security import (
    display_prefix,
    hash_password,
    hash_secret,
    looks_like_api_key,
    new_api_key,
    verify_password,
)
from common.sessions import parse_user_reference, read_session_cookie, user_reference


def test_api_keys_carry_at_least_32_random_bytes():
    key = new_api_key()
    assert key.startswith("sdk_") and len(key) >= 4 + 43
    assert looks_like_api_key(key)
    assert new_api_key() != key
    assert display_prefix(key) == key[:12]


def test_secrets_are_stored_as_a_digest_not_the_value():
    key = new_api_key()
    assert hash_secret(key) != key and len(hash_secret(key)) == 64


def test_passwords_use_argon2id_at_owasp_strength():
    stored = hash_password("correct horse")
    params = extract_parameters(stored)
    assert stored.startswith("$argon2id$")
    assert params.memory_cost >= 19 * 1024 and params.time_cost >= 2
    assert verify_password(stored, "correct horse")
    assert not verify_password(stored, "wrong")
    assert not verify_password(None, "anything")
    assert not verify_password("garbage", "anything")


def test_the_gateway_reads_the_cookie_flask_writes():
    from flask import Flask, session

    app = Flask(__name__)
    app.secret_key = "k" * 40
    app.config["SESSION_COOKIE_NAME"] = "seadragon_session"

    @app.get("/")
    def login():
        session["_user_id"] = user_reference(5, 2)
        return "ok"

    cookie = app.test_client().get("/").headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    data = read_session_cookie(cookie, "k" * 40)
    assert parse_user_reference(data["_user_id"]) == (5, 2)
    assert read_session_cookie(cookie, "another-secret-key-entirely-xxxxxxxx") is None
    assert read_session_cookie(cookie[:-2] + "xx", "k" * 40) is None


def test_common_imports_neither_flask_nor_quart():
    code = (
        "import sys, common.settings, common.models, common.security, common.network, common.sources, "
        "common.sessions, common.db, common.bootstrap, common.dispatch, common.launcher\n"
        "banned = ('flask', 'quart', 'admin_app', 'proxy_app')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in banned)\n"
        "print(','.join(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
