"""PATCH of API keys, whitelist entries and users: names, priorities, roles, policies (contract §7)."""

from __future__ import annotations

import pytest

from tests.admin.helpers import bearer_token, login

LIMITS = ("models", "rpm", "max_queued", "max_concurrent", "daily_tokens", "daily_gpu_seconds")


@pytest.fixture
def key(api) -> dict:
    return api.post("/api/admin/apikeys", json={"name": "ci-bot", "priority": 5}).get_json()


@pytest.fixture
def entry(api) -> dict:
    return api.post("/api/admin/whitelist", json={"ip": "10.0.0.0/24", "label": "lan"}).get_json()


def test_a_key_takes_its_name_priority_policy_and_end_user_header(api, key):
    patch = {
        "name": "open-webui",
        "priority": 3,
        "models": ["llama3.2", "qwen*"],
        "rpm": 60,
        "max_queued": 5,
        "max_concurrent": 2,
        "daily_tokens": 100_000,
        "expires_at": "2030-01-31T12:00:00+01:00",
        "end_user_header": "X-OpenWebUI-User-Id",
    }
    response = api.patch(f"/api/admin/apikeys/{key['id']}", json=patch)
    assert response.status_code == 200
    changed = response.get_json()
    assert changed == {**changed, **patch, "expires_at": "2030-01-31T11:00:00Z"}
    assert changed["prefix"] == key["prefix"] and "key" not in changed
    assert api.get("/api/admin/apikeys").get_json() == [changed]


def test_null_clears_a_field_and_absent_fields_stay(api, key):
    api.patch(f"/api/admin/apikeys/{key['id']}", json={"rpm": 10, "models": ["x"], "end_user_header": "X-U"})
    cleared = api.patch(
        f"/api/admin/apikeys/{key['id']}", json={"rpm": None, "end_user_header": None}
    ).get_json()
    assert cleared["rpm"] is None and cleared["end_user_header"] is None and cleared["models"] == ["x"]
    assert api.patch(f"/api/admin/apikeys/{key['id']}", json={"models": []}).get_json()["models"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"priority": "1"}, "priority"),
        ({"priority": None}, "priority"),  # a priority cannot be cleared
        ({"name": ""}, "name"),
        ({"name": None}, "name"),
        ({"rpm": 0}, "rpm"),
        ({"rpm": 2.5}, "rpm"),
        ({"max_concurrent": "2"}, "max_concurrent"),
        ({"daily_tokens": -5}, "daily_tokens"),
        ({"models": "llama3.2"}, "models"),
        ({"models": ["bad name"]}, "models"),
        ({"expires_at": "soon"}, "expires_at"),
        ({"end_user_header": "Not A Header"}, "end_user_header"),
        ({"end_user_header": "Authorization"}, "end_user_header"),
        ({"colour": "blue"}, "colour"),
        ({"key": "sdk_x"}, "key"),
        ({"is_active": False}, "is_active"),  # revoking is DELETE
    ],
)
def test_a_bad_value_or_unknown_field_of_a_key_is_400_naming_it(api, key, body, field):
    response = api.patch(f"/api/admin/apikeys/{key['id']}", json=body)
    assert response.status_code == 400 and field in response.get_json()["error"]
    assert api.get("/api/admin/apikeys").get_json()[0]["priority"] == 5  # nothing was written


def test_a_whitelist_entry_takes_label_priority_and_limits(api, entry):
    patch = {"label": "office", "priority": 0, "models": ["*"], "rpm": 600, "daily_tokens": None}
    for ident in (entry["id"], "10.0.0.0%2F24"):
        response = api.patch(f"/api/admin/whitelist/{ident}", json=patch)
        assert response.status_code == 200
        assert response.get_json() == {**entry, **patch}
    response = api.patch(f"/api/admin/whitelist/{entry['id']}", json={"expires_at": "2030-01-01T00:00:00Z"})
    assert response.status_code == 400 and "expires_at" in response.get_json()["error"]  # keys only
    response = api.patch(f"/api/admin/whitelist/{entry['id']}", json={"ip": "10.0.1.0/24"})
    assert response.status_code == 400 and "ip" in response.get_json()["error"]


def test_a_user_takes_roles_and_limits(api, bob):
    response = api.patch(
        f"/api/admin/users/{bob.id}", json={"is_admin": True, "rpm": 20, "models": ["llama*"]}
    )
    assert response.status_code == 200
    user = response.get_json()
    assert set(user) == {"id", "username", "is_admin", "is_active", "created_at", "last_login", *LIMITS}
    assert (user["username"], user["is_admin"], user["is_active"], user["rpm"]) == ("bob", True, True, 20)
    assert user["models"] == ["llama*"] and user["max_queued"] is None
    listed = api.get("/api/admin/users").get_json()
    assert [row["username"] for row in listed] == ["bob", "alice"]  # newest first
    assert listed[0] == user and listed[1]["last_login"] is not None


@pytest.mark.parametrize(
    ("body", "field"),
    [({"is_admin": "yes"}, "is_admin"), ({"is_active": None}, "is_active"), ({"username": "x"}, "username")],
)
def test_a_bad_user_field_is_400_naming_it(api, bob, body, field):
    response = api.patch(f"/api/admin/users/{bob.id}", json=body)
    assert response.status_code == 400 and field in response.get_json()["error"]


def test_disabling_a_user_ends_their_sessions_and_tokens(api, client, bob):
    token = bearer_token(client, "bob")
    assert api.patch(f"/api/admin/users/{bob.id}", json={"is_active": False}).get_json()["is_active"] is False
    assert client.get("/api/admin/users", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert login(client.application.test_client(), "bob").status_code == 401


@pytest.mark.parametrize("field", ["is_admin", "is_active"])
def test_an_admin_cannot_demote_or_disable_themselves(api, alice, make_user, field):
    make_user("carol", admin=True)
    response = api.patch(f"/api/admin/users/{alice.id}", json={field: False})
    assert response.status_code == 400
    assert field in response.get_json()["error"] and "yourself" in response.get_json()["error"]
    me = next(user for user in api.get("/api/admin/users").get_json() if user["id"] == alice.id)
    assert me["is_admin"] and me["is_active"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/admin/apikeys/999",
        "/api/admin/whitelist/999",
        "/api/admin/whitelist/10.9.9.9",
        "/api/admin/users/999",
    ],
)
def test_patching_something_unknown_is_404(api, path):
    response = api.patch(path, json={"rpm": 1})
    assert response.status_code == 404 and "error" in response.get_json()


def test_a_patch_body_must_be_a_json_object(api, key):
    response = api.patch(f"/api/admin/apikeys/{key['id']}", data="[1]", content_type="application/json")
    assert response.status_code == 400 and "JSON object" in response.get_json()["error"]


def test_the_panel_pages_show_policies(admin_client, api, key, bob):
    api.patch(f"/api/admin/apikeys/{key['id']}", json={"rpm": 42, "models": ["qwen*"]})
    page = admin_client.get("/admin/apikeys/").get_data(as_text=True)
    assert "42" in page and "qwen*" in page


def test_daily_gpu_seconds_is_a_policy_field_everywhere(api, admin_client, key, entry, bob):
    # docs/contract.md §13: keys, whitelist entries and users; the API and the panel.
    for path in (
        f"/api/admin/apikeys/{key['id']}",
        f"/api/admin/whitelist/{entry['id']}",
        f"/api/admin/users/{bob.id}",
    ):
        response = api.patch(path, json={"daily_gpu_seconds": 3600})
        assert response.status_code == 200 and response.get_json()["daily_gpu_seconds"] == 3600
        for bad in (0, -5, 1.5, "3600", 10**10):
            refused = api.patch(path, json={"daily_gpu_seconds": bad})
            assert refused.status_code == 400 and "daily_gpu_seconds" in refused.get_json()["error"]
    assert api.get("/api/admin/apikeys").get_json()[0]["daily_gpu_seconds"] == 3600
    assert {row["username"]: row["daily_gpu_seconds"] for row in api.get("/api/admin/users").get_json()}[
        "bob"
    ] == 3600
    for page in ("/admin/apikeys/", "/admin/whitelist/", "/admin/users/"):
        body = admin_client.get(page).get_data(as_text=True)
        assert 'name="daily_gpu_seconds"' in body and "3600 GPU s/24 h" in body
    cleared = api.patch(f"/api/admin/apikeys/{key['id']}", json={"daily_gpu_seconds": None})
    assert cleared.get_json()["daily_gpu_seconds"] is None
