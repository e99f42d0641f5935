"""Hostile input to the admin app through HTTP: lockout races, lookalike names, bad links and pages."""

from __future__ import annotations

import os
import stat
import threading

import httpx
import pytest
from werkzeug.serving import make_server

from admin_app.accounts import LOCKOUT_LIMIT
from admin_app.extensions import db
from common.bootstrap import create_user
from common.db import upgrade
from common.settings import Settings
from tests.admin.helpers import PASSWORDS, bearer_token, listed
from tests.conftest import settings_env
from tests.postgres import own_postgres_database


def _serve(app):
    """The app on a real threaded HTTP server; returns (base URL, stop)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        thread.join()
        server.server_close()

    return f"http://127.0.0.1:{server.server_port}", stop


@pytest.fixture
def postgres_app(tmp_path, app_factory):
    """The admin app on a PostgreSQL database of its own (dropped afterwards), with bob in it."""
    with own_postgres_database() as url:
        settings = Settings.from_env(settings_env(tmp_path, database_url=url))
        upgrade(settings.database_url)
        app = app_factory(settings)
        with app.app_context():
            create_user(db.session, "bob", PASSWORDS["bob"])
            db.session.commit()
        yield app
        with app.app_context():
            db.engine.dispose()


@pytest.mark.costly  # forty threads
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_forty_concurrent_logins_are_decided_one_by_one(request, database):
    """39 wrong passwords and the right one at the same moment: at most LOCKOUT_LIMIT are checked."""
    if database == "sqlite":
        request.getfixturevalue("bob")
        app = request.getfixturevalue("app")
    else:
        app = request.getfixturevalue("postgres_app")
    base, stop = _serve(app)
    barrier = threading.Barrier(40)
    statuses: list[int] = []
    lock = threading.Lock()

    def attempt(number: int) -> None:
        password = PASSWORDS["bob"] if number == 20 else f"wrong-password-{number}"
        with httpx.Client(base_url=base, timeout=120) as client:
            barrier.wait()
            response = client.post("/auth/token", json={"username": "bob", "password": password})
            with lock:
                statuses.append(response.status_code)

    try:
        workers = [threading.Thread(target=attempt, args=(number,)) for number in range(40)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        stop()
    assert len(statuses) == 40
    checked = [status for status in statuses if status != 429]
    assert 1 <= len(checked) <= LOCKOUT_LIMIT, statuses
    assert set(checked) <= {200, 401}


def _new_token(admin_client) -> str:
    return admin_client.post("/api/admin/tokens", json={}).get_json()["token"]


def _sign_up(app, admin_client, username: str):
    return app.test_client().post(
        "/auth/register",
        data={"token": _new_token(admin_client), "username": username, "password": "a-good-password"},
    )


@pytest.mark.parametrize(
    ("username", "message"),
    [
        ("ａｌｉｃｅ", "name is taken"),  # fullwidth: NFKC makes it alice
        ("ALICE", "name is taken"),
        ("alice\u200b", "invisible or control characters"),  # zero-width space
        ("\u202eecila", "invisible or control characters"),  # right-to-left override
        ("al ice", "invisible or control characters"),
        ("al\u00a0ice", "invisible or control characters"),  # no-break space
        # docs/contract.md §16: mixed scripts, as Unicode's confusable detection (UTS #39) defines them
        ("\u0430dmin", "one script, not mixed (Cyrl, Latn)"),  # Cyrillic а
        ("adm\u0456n", "one script, not mixed (Cyrl, Latn)"),  # Ukrainian і
        ("\u03b1dmin", "one script, not mixed (Grek, Latn)"),  # Greek α
        ("paypa\u04cf", "one script, not mixed"),  # Cyrillic palochka for l
    ],
)
def test_lookalike_usernames_are_refused(app, admin_client, username, message):
    response = _sign_up(app, admin_client, username)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "username", ["иван", "やまだ太郎", "Ελένη", "김철수", "José-María", "user_01", "straße"]
)
def test_names_in_one_script_of_any_kind_are_accepted(app, admin_client, username):
    assert _sign_up(app, admin_client, username).status_code == 302


def test_names_differing_only_in_case_or_composition_are_one_account(app, admin_client):
    assert _sign_up(app, admin_client, "Émile").status_code == 302
    for twin in ("émile", "E\u0301mile", "ÉMILE"):
        response = _sign_up(app, admin_client, twin)
        assert response.status_code == 400 and "name is taken" in response.get_data(as_text=True)
    # Sign-in finds the account by any spelling that normalises to it.
    for spelling in ("émile", "E\u0301MILE", "Émile"):
        response = app.test_client().post(
            "/auth/token", json={"username": spelling, "password": "a-good-password"}
        )
        assert response.status_code == 200, spelling


@pytest.mark.parametrize(
    "target",
    [
        "/admin/\r\nSet-Cookie: x=1",
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example/",
        "/\t/evil.example/",
        "http://[::1",
    ],
)
def test_a_bad_next_is_ignored_for_the_default_page(client, alice, target):
    response = client.post(
        "/auth/login",
        query_string={"next": target},
        data={"username": "alice", "password": PASSWORDS["alice"]},
    )
    assert response.status_code == 302
    assert response.location == "/admin/"


def test_a_good_next_is_followed(client, alice):
    data = {"username": "alice", "password": PASSWORDS["alice"]}
    response = client.post("/auth/login", query_string={"next": "/admin/requests?page=2"}, data=data)
    assert response.status_code == 302 and response.location == "/admin/requests?page=2"


@pytest.mark.parametrize(
    ("page", "shown"),
    [("99999999999999999999", 2), ("9223372036854775807", 2), ("-5", 1), ("0", 1), ("x", 1)],
)
def test_out_of_range_page_numbers_show_the_nearest_page(admin_client, log, page, shown):
    newest_first = [log(seconds_ago=n) for n in range(60)]  # two pages of 50
    response = admin_client.get("/admin/requests", query_string={"page": page})
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert f"Page {shown} of 2" in body
    assert listed(response) == (newest_first[:50] if shown == 1 else newest_first[50:])


@pytest.mark.parametrize(
    "given",
    [
        "1.2.3.4/٨",
        "1.2.3.4%eth0",
        "fe80::1%eth0",
        "１.2.3.4",
        "1.2.3.٤",
        "10.0.0.0/+8",
        "10.0.0.0/08x",
    ],
)
def test_whitelist_entries_with_non_ascii_digits_or_zones_are_refused(admin_client, given):
    response = admin_client.post("/api/admin/whitelist", json={"ip": given})
    assert response.status_code == 400, response.get_json()
    assert admin_client.get("/api/admin/whitelist").get_json() == []


def test_the_database_and_secret_key_files_are_private(app, alice, settings, tmp_path):
    bearer_token(app.test_client(), "alice")  # a write: the -wal file exists
    database = settings.database_url.split("///", 1)[1]
    files = [database, f"{database}-wal", f"{database}-shm", str(settings.instance_dir / "secret_key")]
    Settings.from_env({"SEADRAGON_INSTANCE_DIR": str(settings.instance_dir)})  # generates the key file
    for path in files:
        assert os.path.exists(path), path
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
