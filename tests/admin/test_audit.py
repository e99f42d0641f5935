"""The audit log (docs/contract.md §7): every admin change and sign-up, newest first, never a secret."""

from __future__ import annotations

import re

import pytest

from tests.admin.helpers import PASSWORDS

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def audit(api) -> list[dict]:
    response = api.get("/api/admin/audit")
    assert response.status_code == 200
    return response.get_json()


def test_every_change_writes_one_row_naming_actor_action_and_target(api, bob):
    key = api.post("/api/admin/apikeys", json={"name": "ci-bot", "priority": 5}).get_json()
    api.patch(f"/api/admin/apikeys/{key['id']}", json={"rpm": 60, "name": "ci"})
    api.delete(f"/api/admin/apikeys/{key['id']}")
    entry = api.post(
        "/api/admin/whitelist", json={"ip": "10.0.0.0/24", "label": "lan", "priority": 4}
    ).get_json()
    api.patch(f"/api/admin/whitelist/{entry['id']}", json={"priority": 1})
    api.delete(f"/api/admin/whitelist/{entry['id']}")
    token = api.post("/api/admin/tokens").get_json()
    api.delete(f"/api/admin/tokens/{token['id']}")
    api.patch(f"/api/admin/users/{bob.id}", json={"is_admin": True, "daily_tokens": 1000})
    rows = audit(api)
    assert [(row["action"], row["target"]) for row in rows] == [
        ("user.update", f"user:{bob.id}"),
        ("token.revoke", f"token:{token['id']}"),
        ("token.create", f"token:{token['id']}"),
        ("whitelist.remove", f"whitelist:{entry['id']}"),
        ("whitelist.update", f"whitelist:{entry['id']}"),
        ("whitelist.add", f"whitelist:{entry['id']}"),
        ("apikey.revoke", f"apikey:{key['id']}"),
        ("apikey.update", f"apikey:{key['id']}"),
        ("apikey.create", f"apikey:{key['id']}"),
    ]
    assert {row["actor"] for row in rows} == {"alice"}
    assert all(set(row) == {"id", "time", "actor", "action", "target", "changes"} for row in rows)
    assert all(ISO_UTC.fullmatch(row["time"]) for row in rows)
    assert [row["id"] for row in rows] == sorted((row["id"] for row in rows), reverse=True)
    by_action = {row["action"]: row["changes"] for row in rows}
    assert by_action["apikey.update"] == {"rpm": [None, 60], "name": ["ci-bot", "ci"]}
    assert by_action["apikey.revoke"] == {"is_active": [True, False]}
    assert by_action["user.update"] == {"is_admin": [False, True], "daily_tokens": [None, 1000]}
    assert by_action["whitelist.add"] == {"ip": "10.0.0.0/24", "label": "lan", "priority": 4}
    # Secrets never reach the audit log: neither the key, nor the token, nor their hashes.
    text = str(rows)
    assert key["key"] not in text and token["token"] not in text and "hash" not in text


def test_a_refused_or_empty_change_writes_nothing(api, bob):
    key = api.post("/api/admin/apikeys", json={"name": "k", "priority": 5}).get_json()
    before = audit(api)
    assert api.patch(f"/api/admin/apikeys/{key['id']}", json={"rpm": 0}).status_code == 400
    assert api.patch(f"/api/admin/apikeys/{key['id']}", json={"priority": 5}).status_code == 200  # no change
    assert api.patch("/api/admin/users/999", json={"rpm": 1}).status_code == 404
    assert audit(api) == before


def test_a_sign_up_is_audited_with_the_new_user_as_actor(api, client):
    token = api.post("/api/admin/tokens").get_json()["token"]
    response = client.post(
        "/auth/register", data={"token": token, "username": "carol", "password": PASSWORDS["carol"]}
    )
    assert response.status_code == 302
    row = audit(api)[0]
    assert (row["action"], row["actor"], row["changes"]) == ("user.register", "carol", {"username": "carol"})
    assert re.fullmatch(r"user:\d+", row["target"])


def test_the_panel_actions_are_audited_too(admin_client, bob):
    admin_client.post(f"/admin/users/{bob.id}/promote")
    admin_client.post("/admin/apikeys/", data={"name": "from-the-panel", "priority": "3"})
    rows = admin_client.get("/api/admin/audit").get_json()
    assert [(row["action"], row["actor"]) for row in rows] == [
        ("apikey.create", "alice"),
        ("user.update", "alice"),
    ]


def test_the_audit_page_lists_the_rows(admin_client, bob):
    admin_client.post(f"/admin/users/{bob.id}/disable")
    page = admin_client.get("/admin/audit/")
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and "user.update" in body and f"user:{bob.id}" in body
    assert 'href="/admin/audit/"' in body  # linked in the nav


@pytest.mark.parametrize("query", ["limit=0", "limit=501", "limit=x", "before=x"])
def test_bad_paging_is_400(api, query):
    response = api.get(f"/api/admin/audit?{query}")
    assert response.status_code == 400 and "error" in response.get_json()


def test_limit_and_before_page_through_the_log(api):
    for number in range(5):
        api.post("/api/admin/apikeys", json={"name": f"k{number}", "priority": 1})
    first = api.get("/api/admin/audit?limit=2").get_json()
    older = api.get(f"/api/admin/audit?limit=2&before={first[-1]['id']}").get_json()
    assert [row["changes"]["name"] for row in first + older] == ["k4", "k3", "k2", "k1"]


def test_the_audit_page_shows_values_escaped_once_and_filters_them(app, api, admin_client):
    api.post("/api/admin/tokens", json={"note": "Dora's <laptop>"})
    key = api.post("/api/admin/apikeys", json={"name": "ci", "priority": 1}).get_json()
    api.patch(f"/api/admin/apikeys/{key['id']}", json={"rpm": 5})
    page = admin_client.get("/admin/audit/").get_data(as_text=True)
    assert "Dora&#39;s &lt;laptop&gt;" in page and "\\u0027" not in page and "\\u003c" not in page
    only_keys = admin_client.get("/admin/audit/?action=apikey").get_data(as_text=True)
    assert "apikey.create" in only_keys and "apikey.update" in only_keys and "token.create" not in only_keys
    one = admin_client.get(f"/admin/audit/?action=apikey.update&target=apikey:{key['id']}").get_data(
        as_text=True
    )
    assert "apikey.update" in one and "apikey.create" not in one
    assert "token.create" not in admin_client.get("/admin/audit/?actor=nobody").get_data(as_text=True)
    listed = api.get("/api/admin/audit?action=token").get_json()
    assert [entry["action"] for entry in listed] == ["token.create"]
