"""Secrets: formats, hashing strength, and the boundary of common/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from argon2 import PasswordHasher, extract_parameters

from common.security import (
    display_prefix,
    hash_password,
    hash_secret,
    looks_like_api_key,
    new_api_key,
    password_hasher_for_tests,
    password_needs_rehash,
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
    assert (params.memory_cost, params.time_cost, params.parallelism) == (19 * 1024, 2, 1)
    assert verify_password(stored, "correct horse")
    assert not verify_password(stored, "wrong")
    assert not verify_password(None, "anything")
    assert not verify_password("garbage", "anything")


def test_tests_on_a_database_hash_cheaply_and_the_hook_restores_the_product_hasher(settings):
    assert extract_parameters(hash_password("pw")).memory_cost == 8  # tests/conftest.py's cheap hasher
    with password_hasher_for_tests(PasswordHasher(time_cost=1, memory_cost=16, parallelism=1)):
        stored = hash_password("pw")
        assert extract_parameters(stored).memory_cost == 16
        assert verify_password(stored, "pw") and not verify_password(None, "pw")
    assert extract_parameters(hash_password("pw")).memory_cost == 8
    assert password_needs_rehash(stored)  # weaker than the hasher in force: upgraded at the next login


@pytest.mark.product_argon2
def test_a_test_marked_product_argon2_hashes_at_the_product_strength(settings):
    assert extract_parameters(hash_password("pw")).memory_cost == 19 * 1024


def test_no_product_code_calls_the_test_only_hasher_hook():
    root = Path(__file__).resolve().parents[2]
    callers = [
        path.relative_to(root).as_posix()
        for package in ("common", "admin_app", "proxy_app", "simulator", "bench")
        for path in (root / package).rglob("*.py")
        if "password_hasher_for_tests" in path.read_text(encoding="utf-8")
    ]
    assert callers == ["common/security.py"]  # where it is defined, and nowhere else
    assert not [p for p in root.glob("*.py") if "password_hasher_for_tests" in p.read_text(encoding="utf-8")]


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


@pytest.mark.costly  # a Python process importing every module
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
