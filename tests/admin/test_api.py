"""The JSON admin API: docs/contract.md §3 shapes, status codes and every validation error."""

from __future__ import annotations

import re
from datetime import datetime

import pytest

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
# docs/contract.md §7: every object shows its policy fields, unset ones as null.
NO_LIMITS = {
    "models": None,
    "rpm": None,
    "max_queued": None,
    "max_concurrent": None,
    "daily_tokens": None,
    "daily_gpu_seconds": None,
}


# -- authentication ----------------------------------------------------------


@pytest.mark.parametrize(
    "header", ["Bearer sda_unknown", "Bearer ", "Basic YWxpY2U6eA==", "Bearer sdk_" + "a" * 43]
)
def test_it_refuses_a_bad_authorization_header_with_401(client, alice, header):
    response = client.get("/api/admin/apikeys", headers={"Authorization": header})
    assert response.status_code == 401 and "error" in response.get_json()
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_bad_bearer_token_does_not_fall_back_to_the_session(admin_client):
    response = admin_client.get("/api/admin/apikeys", headers={"Authorization": "Bearer sda_nope"})
    assert response.status_code == 401


def test_unknown_paths_and_methods_answer_json(api):
    response = api.get("/api/admin/nothing-here")
    assert response.status_code == 404 and response.is_json and "error" in response.get_json()
    response = api.put("/api/admin/apikeys")
    assert response.status_code == 405 and "error" in response.get_json()


# -- whitelist -----------------------------------------------------------------


def test_whitelist_entries_have_the_spec_shape(api):
    response = api.post("/api/admin/whitelist", json={"ip": "10.0.0.5", "label": "box", "priority": 2})
    assert response.status_code == 201
    entry = response.get_json()
    assert set(entry) == {"id", "ip", "label", "priority", "added_at", *NO_LIMITS}
    assert entry["ip"] == "10.0.0.5" and entry["label"] == "box" and entry["priority"] == 2
    assert ISO_UTC.fullmatch(entry["added_at"])
    assert api.get("/api/admin/whitelist").get_json() == [entry]


def test_whitelist_defaults_to_direct_priority_and_an_empty_label(api, app):
    entry = api.post("/api/admin/whitelist", json={"ip": "10.0.0.6"}).get_json()
    assert entry["priority"] == app.config["SEADRAGON"].direct_priority and entry["label"] == ""


def test_whitelist_accepts_the_query_string_form(api):
    response = api.post("/api/admin/whitelist?ip=10.0.0.0/8&label=lan&priority=4")
    assert response.status_code == 201
    assert response.get_json()["ip"] == "10.0.0.0/8" and response.get_json()["priority"] == 4
    assert api.post("/api/admin/whitelist?ip=10.9.9.9&priority=x").status_code == 400


def test_a_duplicate_whitelist_entry_is_409_in_any_spelling(api):
    assert api.post("/api/admin/whitelist", json={"ip": "10.0.0.0/24"}).status_code == 201
    response = api.post("/api/admin/whitelist", json={"ip": "10.0.0.77/24"})
    assert response.status_code == 409 and "ip" in response.get_json()["error"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "ip"),
        ({"ip": "not-an-ip"}, "ip"),
        ({"ip": "10.0.0.1/33"}, "ip"),
        ({"ip": 167772161}, "ip"),
        ({"ip": "10.0.0.1", "priority": "5"}, "priority"),
        ({"ip": "10.0.0.1", "priority": 5.5}, "priority"),
        ({"ip": "10.0.0.1", "priority": True}, "priority"),
        ({"ip": "10.0.0.1", "priority": -1}, "priority"),
        ({"ip": "10.0.0.1", "priority": 101}, "priority"),
        ({"ip": "10.0.0.1", "label": 7}, "label"),
        ({"ip": "10.0.0.1", "label": "x" * 101}, "label"),
    ],
)
def test_whitelist_validation_names_the_field(api, body, field):
    response = api.post("/api/admin/whitelist", json=body)
    assert response.status_code == 400
    assert field in response.get_json()["error"]


def test_deleting_a_whitelist_entry_by_id_by_ip_and_by_encoded_cidr(api):
    first = api.post("/api/admin/whitelist", json={"ip": "10.0.0.1"}).get_json()
    api.post("/api/admin/whitelist", json={"ip": "10.1.0.0/16"})
    api.post("/api/admin/whitelist", json={"ip": "2001:db8::/32"})
    assert api.delete(f"/api/admin/whitelist/{first['id']}").get_json() == first
    assert api.delete("/api/admin/whitelist/10.1.0.0%2F16").status_code == 200
    assert api.delete("/api/admin/whitelist/2001:db8::%2F32").status_code == 200
    assert api.get("/api/admin/whitelist").get_json() == []
    for ident in ("10.0.0.1", "999", "10.1.0.0%2F16", "garbage", str(2**63 - 1)):
        response = api.delete(f"/api/admin/whitelist/{ident}")
        assert response.status_code == 404 and "error" in response.get_json()
    # An id no database can hold is out of range (docs/contract.md §16).
    assert api.delete("/api/admin/whitelist/99999999999999999999999").status_code == 400


# -- registration tokens -------------------------------------------------------


def test_a_token_is_created_once_and_listed_without_its_secret(api):
    response = api.post("/api/admin/tokens", json={"expires_in_days": 3})
    created = response.get_json()
    assert response.status_code == 201
    assert set(created) == {"id", "token", "expires_at", "register_url"}
    assert created["token"].startswith("sdr_")
    # Without PUBLIC_URL the link is relative: never built from the request's Host.
    assert created["register_url"] == f"/auth/register?token={created['token']}"
    listed = api.get("/api/admin/tokens").get_json()
    assert listed == [
        {
            "id": created["id"],
            "prefix": created["token"][:12],
            "created_at": listed[0]["created_at"],
            "expires_at": created["expires_at"],
            "status": "active",
            "used_by": None,
        }
    ]
    assert created["token"] not in str(listed)


def test_a_token_defaults_to_seven_days(api):
    api.post("/api/admin/tokens")
    token = api.get("/api/admin/tokens").get_json()[0]
    created = datetime.fromisoformat(token["created_at"])
    expires = datetime.fromisoformat(token["expires_at"])
    assert (expires - created).days == 7


@pytest.mark.parametrize("days", [0, 366, "7", 7.5, True, None])
def test_token_validation_names_the_field(api, days):
    response = api.post("/api/admin/tokens", json={"expires_in_days": days})
    assert response.status_code == 400 and "expires_in_days" in response.get_json()["error"]


def test_revoking_a_token(api):
    token_id = api.post("/api/admin/tokens").get_json()["id"]
    response = api.delete(f"/api/admin/tokens/{token_id}")
    assert response.status_code == 200 and response.get_json()["status"] == "revoked"
    assert api.delete(f"/api/admin/tokens/{token_id}").status_code == 200
    assert api.delete("/api/admin/tokens/999").status_code == 404


# -- API keys ------------------------------------------------------------------


def test_a_key_is_shown_once_and_never_listed(api):
    response = api.post("/api/admin/apikeys", json={"name": "bot", "priority": 2})
    created = response.get_json()
    assert response.status_code == 201
    assert set(created) == {"id", "key", "name", "priority", "prefix", "created_at"}
    assert created["key"].startswith("sdk_") and len(created["key"]) >= 4 + 43
    assert created["prefix"] == created["key"][:12]
    listed = api.get("/api/admin/apikeys").get_json()
    assert listed == [
        {
            "id": created["id"],
            "name": "bot",
            "prefix": created["prefix"],
            "priority": 2,
            "created_at": created["created_at"],
            "last_used": None,
            "is_active": True,
            "owner": None,
            **NO_LIMITS,
            "expires_at": None,
            "end_user_header": None,
        }
    ]
    assert created["key"] not in str(listed)


def test_lists_are_newest_first(api):
    for number, name in enumerate(("first", "second", "third")):
        api.post("/api/admin/apikeys", json={"name": name, "priority": 1})
        api.post("/api/admin/whitelist", json={"ip": f"10.0.0.{number}", "label": name})
        api.post("/api/admin/tokens")
    assert [key["name"] for key in api.get("/api/admin/apikeys").get_json()] == ["third", "second", "first"]
    assert [entry["label"] for entry in api.get("/api/admin/whitelist").get_json()] == [
        "third",
        "second",
        "first",
    ]
    ids = [token["id"] for token in api.get("/api/admin/tokens").get_json()]
    assert ids == sorted(ids, reverse=True)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"priority": 1}, "name"),
        ({"name": "", "priority": 1}, "name"),
        ({"name": "   ", "priority": 1}, "name"),
        ({"name": "x" * 101, "priority": 1}, "name"),
        ({"name": 12, "priority": 1}, "name"),
        ({"name": "bot"}, "priority"),
        ({"name": "bot", "priority": "5"}, "priority"),
        ({"name": "bot", "priority": 5.5}, "priority"),
        ({"name": "bot", "priority": True}, "priority"),
        ({"name": "bot", "priority": -1}, "priority"),
        ({"name": "bot", "priority": 101}, "priority"),
    ],
)
def test_key_validation_names_the_field(api, body, field):
    response = api.post("/api/admin/apikeys", json=body)
    assert response.status_code == 400 and field in response.get_json()["error"]


def test_names_of_one_and_a_hundred_characters_are_fine(api):
    assert api.post("/api/admin/apikeys", json={"name": "x", "priority": 0}).status_code == 201
    assert api.post("/api/admin/apikeys", json={"name": "y" * 100, "priority": 100}).status_code == 201


@pytest.mark.parametrize("body", ["[1, 2]", "not json", '"text"'])
def test_a_body_that_is_not_a_json_object_is_400(api, body):
    response = api.post("/api/admin/apikeys", data=body, content_type="application/json")
    assert response.status_code == 400 and "JSON object" in response.get_json()["error"]


def test_revoking_a_key_twice_is_fine_and_an_unknown_key_is_404(api):
    key_id = api.post("/api/admin/apikeys", json={"name": "bot", "priority": 1}).get_json()["id"]
    for _ in range(2):
        response = api.delete(f"/api/admin/apikeys/{key_id}")
        assert response.status_code == 200 and response.get_json()["is_active"] is False
    assert api.delete("/api/admin/apikeys/4242").status_code == 404


def test_a_key_is_created_with_its_policy_in_one_call_and_every_bad_field_is_named(api):
    made = api.post(
        "/api/admin/apikeys",
        json={"name": "agent", "priority": 4, "rpm": 30, "models": ["qwen*"], "end_user_header": "X-User"},
    )
    assert made.status_code == 201
    listed = api.get("/api/admin/apikeys").get_json()[0]
    assert (listed["rpm"], listed["models"], listed["end_user_header"]) == (30, ["qwen*"], "X-User")
    audit = api.get("/api/admin/audit").get_json()[0]
    assert audit["action"] == "apikey.create" and audit["changes"]["rpm"] == 30
    refused = api.post("/api/admin/apikeys", json={"name": "x", "priority": 4, "rpm": 0, "colour": "red"})
    assert refused.status_code == 400 and refused.get_json()["error"].startswith(("rpm", "colour"))
    assert len(api.get("/api/admin/apikeys").get_json()) == 1  # nothing made
