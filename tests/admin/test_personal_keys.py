"""Personal API keys at ``/account/api/keys`` (docs/contract.md §14), through the real admin app.

bob is a plain user, carol another one, alice the admin.
"""

from __future__ import annotations

import re

import pytest

from admin_app.extensions import db
from common.models import APIKey, AuditEntry
from common.security import hash_secret
from tests.admin.helpers import bearer_token, login


@pytest.fixture
def bob_api(app, bob):
    """bob's client with his access token, as a script or agent set-up would call."""
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {bearer_token(client, 'bob')}"
    return client


def test_a_user_makes_a_key_sees_it_once_lists_it_and_revokes_it(app, bob_api, bob):
    response = bob_api.post("/account/api/keys", json={"name": "laptop agent"})
    assert response.status_code == 201
    created = response.get_json()
    assert set(created) == {"id", "key", "name", "prefix", "created_at", "expires_at"}
    assert created["key"].startswith("sdk_") and created["prefix"] == created["key"][:12]
    assert created["name"] == "laptop agent" and created["expires_at"] is None
    listed = bob_api.get("/account/api/keys").get_json()
    assert [key["id"] for key in listed] == [created["id"]] and listed[0]["is_active"] is True
    assert created["key"] not in str(listed)
    with app.app_context():
        key = db.session.get(APIKey, created["id"])
        assert key.owner_id == bob.id and key.key_hash == hash_secret(created["key"])
        assert key.priority == app.config["SEADRAGON"].user_key_priority == 5
    revoked = bob_api.delete(f"/account/api/keys/{created['id']}")
    assert revoked.status_code == 200 and revoked.get_json()["is_active"] is False
    assert bob_api.get("/account/api/keys").get_json()[0]["revoked_at"] is not None


def test_a_key_takes_the_USER_KEY_PRIORITY_and_an_expiry(app_factory, settings_factory, bob):
    app = app_factory(settings_factory(USER_KEY_PRIORITY="9"))
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {bearer_token(client, 'bob')}"
    created = client.post("/account/api/keys", json={"name": "ci", "expires_at": "2099-01-31T00:00:00Z"})
    assert created.status_code == 201 and created.get_json()["expires_at"] == "2099-01-31T00:00:00Z"
    with app.app_context():
        assert db.session.get(APIKey, created.get_json()["id"]).priority == 9


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": 7}, "name"),
        ({"name": "x", "expires_at": "tomorrow"}, "expires_at"),
        ({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"name": "x", "priority": 0}, "priority"),
    ],
)
def test_a_bad_field_is_a_400_naming_it(bob_api, body, field):
    response = bob_api.post("/account/api/keys", json=body)
    assert response.status_code == 400 and response.get_json()["error"].startswith(field)
    assert bob_api.get("/account/api/keys").get_json() == []


def test_at_most_USER_MAX_KEYS_keys_are_active_then_409(app_factory, settings_factory, bob):
    app = app_factory(settings_factory(USER_MAX_KEYS="2"))
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {bearer_token(client, 'bob')}"
    first = client.post("/account/api/keys", json={"name": "one"}).get_json()
    assert client.post("/account/api/keys", json={"name": "two"}).status_code == 201
    refused = client.post("/account/api/keys", json={"name": "three"})
    assert refused.status_code == 409 and "2 active keys" in refused.get_json()["error"]
    client.delete(f"/account/api/keys/{first['id']}")  # a revoked key no longer counts
    assert client.post("/account/api/keys", json={"name": "three"}).status_code == 201


def test_another_users_key_is_404_and_stays_active(app, bob_api, make_user):
    make_user("carol")
    carol = app.test_client()
    carol.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {bearer_token(carol, 'carol')}"
    key = carol.post("/account/api/keys", json={"name": "carol's"}).get_json()
    assert bob_api.delete(f"/account/api/keys/{key['id']}").status_code == 404
    assert bob_api.delete("/account/api/keys/999999").status_code == 404
    assert bob_api.get("/account/api/keys").get_json() == []  # only one's own keys are listed
    assert carol.get("/account/api/keys").get_json()[0]["is_active"] is True


def test_a_session_needs_the_csrf_token_and_strangers_get_401(app_factory, bob):
    app = app_factory(WTF_CSRF_ENABLED=True)
    client = app.test_client()
    assert client.get("/account/api/keys").status_code == 401
    assert login(client, "bob").status_code == 302
    assert client.post("/account/api/keys", json={"name": "x"}).status_code == 400  # no token
    token = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/account").get_data(as_text=True))[
        1
    ]
    created = client.post("/account/api/keys", json={"name": "x"}, headers={"X-CSRFToken": token})
    assert created.status_code == 201
    assert client.get("/account/api/keys").status_code == 200
    stranger = app.test_client()
    stranger.environ_base["HTTP_AUTHORIZATION"] = "Bearer not-a-token"
    assert stranger.get("/account/api/keys").status_code == 401


def test_the_admin_sees_the_owner_and_may_edit_and_revoke_it_and_it_is_audited(app, api, bob_api):
    mine = bob_api.post("/account/api/keys", json={"name": "bob's agent"}).get_json()
    admins = api.post("/api/admin/apikeys", json={"name": "ci", "priority": 1}).get_json()
    owners = {key["id"]: key["owner"] for key in api.get("/api/admin/apikeys").get_json()}
    assert owners == {mine["id"]: "bob", admins["id"]: None}
    edited = api.patch(f"/api/admin/apikeys/{mine['id']}", json={"rpm": 3, "models": ["qwen*"]})
    assert edited.status_code == 200 and edited.get_json()["owner"] == "bob"
    assert api.delete(f"/api/admin/apikeys/{mine['id']}").get_json()["is_active"] is False
    assert bob_api.get("/account/api/keys").get_json()[0]["is_active"] is False
    with app.app_context():
        actions = [(entry.actor, entry.action) for entry in db.session.scalars(db.select(AuditEntry))]
    assert ("bob", "apikey.create") in actions and ("alice", "apikey.revoke") in actions


def test_the_panels_key_list_names_the_owner(app, admin_client, bob_api):
    bob_api.post("/account/api/keys", json={"name": "bob's agent"})
    body = admin_client.get("/admin/apikeys/").get_data(as_text=True)
    assert 'data-owner="bob"' in body and "Personal key of bob" in body


def test_own_usage_counts_inference_only_with_limits_and_whats_left_today(
    app_factory, settings_factory, make_user, log
):
    app = app_factory(settings_factory(WEBCHAT_DAILY_TOKENS="1000", WEBCHAT_DAILY_GPU_SECONDS="10"))
    bob = make_user("bob")
    alice = make_user("alice")
    log(user_id=bob.id, source="web_chat", prompt_tokens=100, completion_tokens=50, gpu_ms=1500)
    log(user_id=bob.id, source="custom_app", api_key_id=None, endpoint="/v1/embeddings", prompt_tokens=10)
    log(
        seconds_ago=3 * 86400,
        user_id=bob.id,
        endpoint="/v1/chat/completions",
        completion_tokens=7,
        gpu_ms=500,
    )
    for endpoint in ("/api/tags", "/v1/models", "/api/show"):  # what pages load: not usage
        log(user_id=bob.id, endpoint=endpoint, method="GET")
    log(user_id=alice.id, prompt_tokens=999, gpu_ms=9000)
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {bearer_token(client, 'bob')}"
    usage = client.get("/account/api/usage").get_json()
    assert usage["day"] == {"requests": 2, "prompt_tokens": 110, "completion_tokens": 50, "gpu_seconds": 1.5}
    assert usage["week"] == {"requests": 3, "prompt_tokens": 110, "completion_tokens": 57, "gpu_seconds": 2.0}
    assert usage["limits"]["daily_tokens"] == 1000 and usage["limits"]["rpm"] is None
    assert usage["limits"]["daily_gpu_seconds"] == 10
    assert usage["remaining"] == {"daily_tokens": 840, "daily_gpu_seconds": 8.5}
    page = client.get("/account")
    assert page.status_code == 302  # the page itself needs the session, the API takes the token
