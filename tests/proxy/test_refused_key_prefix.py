"""A refused API key leaves its display prefix on the 401 row (never the key) and on the requests page."""

from __future__ import annotations

import httpx

from common.security import DISPLAY_PREFIX_LEN, new_api_key, presented_key_prefix
from proxy_app import create_app
from tests.proxy.fake_ollama import chat_request
from tests.proxy.support import PASSWORD, AdminApp, log_rows


def test_a_malformed_value_shows_at_most_a_third_of_itself():
    key = new_api_key()
    assert presented_key_prefix(key) == key[:DISPLAY_PREFIX_LEN]
    assert presented_key_prefix("hunter2hunter2") == "hunt"
    assert presented_key_prefix("pw") == ""


async def test_the_401_row_shows_the_prefix_of_the_key_that_was_tried(
    settings_factory, fake_ollama, accounts
):
    settings = settings_factory()
    db = accounts(settings)
    revoked = db.key(name="old laptop")
    db.revoke_key(revoked)
    unknown = new_api_key()
    valid = db.key(name="app")
    app = create_app(settings=settings, transport=httpx.MockTransport(fake_ollama))
    async with app.test_app() as test_app:
        client = test_app.test_client()
        tries = [
            ("198.51.100.1", {"X-API-Key": unknown}),
            ("198.51.100.2", {"Authorization": f"Bearer {revoked}"}),
            ("198.51.100.3", {"X-API-Key": "hunter2hunter2"}),
            ("198.51.100.4", {"X-API-Key": valid}),
            ("198.51.100.5", {}),
        ]
        for ip, headers in tries:
            await chat_request(client, ip, headers=headers)
    rows = {row.client_ip: row for row in log_rows(settings)}
    assert (rows["198.51.100.1"].status, rows["198.51.100.1"].key_prefix) == (401, unknown[:12])
    assert (rows["198.51.100.2"].status, rows["198.51.100.2"].key_prefix) == (401, revoked[:12])
    assert (rows["198.51.100.3"].status, rows["198.51.100.3"].key_prefix) == (401, "hunt")
    # An accepted key is named by its id; no key, no prefix.
    assert (rows["198.51.100.4"].status, rows["198.51.100.4"].key_prefix) == (200, None)
    assert (rows["198.51.100.5"].status, rows["198.51.100.5"].key_prefix) == (401, None)
    for row in rows.values():
        assert unknown not in str(tuple(row)) and revoked not in str(tuple(row))

    db.user("root", admin=True)
    admin = AdminApp(settings).app.test_client()
    admin.post("/auth/login", data={"username": "root", "password": PASSWORD})
    page = admin.get("/admin/requests").get_data(as_text=True)
    assert f"{unknown[:12]}…" in page and f"{revoked[:12]}…" in page
    assert unknown not in page and revoked not in page
