"""Edit in place in the panel (docs/contract.md §11): the same services as PATCH, errors under their field."""

from __future__ import annotations

import re

import pytest

from tests.admin.helpers import csrf_token, login


@pytest.fixture
def csrf_admin(app_factory, alice):
    """alice on the app as in production: CSRF on."""
    client = app_factory(WTF_CSRF_ENABLED=True).test_client()
    assert login(client, "alice").status_code == 302
    return client


def _key(client) -> int:
    token = csrf_token(client, "/admin/apikeys/")
    client.post("/admin/apikeys/", data={"name": "ci-bot", "priority": "5", "csrf_token": token})
    return client.get("/api/admin/apikeys").get_json()[0]["id"]


def test_a_key_is_edited_in_place(csrf_admin):
    key_id = _key(csrf_admin)
    form = {
        "csrf_token": csrf_token(csrf_admin, "/admin/apikeys/"),
        "name": "open-webui",
        "priority": "3",
        "models": "llama3.2, qwen*",
        "rpm": "60",
        "max_queued": "",
        "max_concurrent": "2",
        "daily_tokens": "",
        "expires_at": "2030-01-31T12:00",
        "end_user_header": "X-OpenWebUI-User-Id",
    }
    response = csrf_admin.post(f"/admin/apikeys/{key_id}/edit", data=form, follow_redirects=True)
    assert response.status_code == 200 and "Saved the key" in response.get_data(as_text=True)
    key = csrf_admin.get("/api/admin/apikeys").get_json()[0]
    assert (key["name"], key["priority"], key["models"], key["rpm"]) == (
        "open-webui",
        3,
        ["llama3.2", "qwen*"],
        60,
    )
    assert (
        key["max_queued"] is None
        and key["max_concurrent"] == 2
        and key["expires_at"] == "2030-01-31T12:00:00Z"
    )
    assert key["end_user_header"] == "X-OpenWebUI-User-Id"
    page = csrf_admin.get("/admin/apikeys/").get_data(as_text=True)
    assert "models llama3.2, qwen*" in page and "60/min" in page and 'value="llama3.2, qwen*"' in page


def test_a_refused_edit_shows_the_error_next_to_its_field_and_keeps_the_text(csrf_admin):
    key_id = _key(csrf_admin)
    form = {
        "csrf_token": csrf_token(csrf_admin, "/admin/apikeys/"),
        "name": "ok",
        "priority": "5",
        "rpm": "lots",
    }
    response = csrf_admin.post(f"/admin/apikeys/{key_id}/edit", data=form)
    body = response.get_data(as_text=True)
    assert response.status_code == 400
    error = re.search(rf'<p class="field-error" id="edit-{key_id}-rpm-error">([^<]+)</p>', body)
    assert error and "whole number" in error.group(1)
    assert f'id="edit-{key_id}-rpm" name="rpm" type="number"' in body and 'value="lots"' in body
    assert '<details class="editor" open>' in body
    assert csrf_admin.get("/api/admin/apikeys").get_json()[0]["rpm"] is None


def test_an_edit_without_the_csrf_token_is_refused(csrf_admin):
    key_id = _key(csrf_admin)
    response = csrf_admin.post(f"/admin/apikeys/{key_id}/edit", data={"name": "x", "priority": "1"})
    assert response.status_code == 400
    assert csrf_admin.get("/api/admin/apikeys").get_json()[0]["name"] == "ci-bot"


def test_a_whitelist_entry_and_a_user_are_edited_in_place(admin_client, bob):
    admin_client.post("/api/admin/whitelist", json={"ip": "10.0.0.0/24"})
    entry_id = admin_client.get("/api/admin/whitelist").get_json()[0]["id"]
    form = {
        "label": "lab",
        "priority": "1",
        "models": "",
        "rpm": "30",
        "daily_tokens": "5000",
        "daily_gpu_seconds": "900",
    }
    response = admin_client.post(f"/admin/whitelist/{entry_id}/edit", data=form, follow_redirects=True)
    assert "Saved 10.0.0.0/24" in response.get_data(as_text=True)
    entry = admin_client.get("/api/admin/whitelist").get_json()[0]
    assert (entry["label"], entry["priority"], entry["rpm"], entry["daily_tokens"]) == ("lab", 1, 30, 5000)
    assert entry["daily_gpu_seconds"] == 900
    response = admin_client.post(f"/admin/users/{bob.id}/edit", data={"max_queued": "3", "models": "llama*"})
    assert response.status_code == 302
    user = next(row for row in admin_client.get("/api/admin/users").get_json() if row["username"] == "bob")
    assert user["max_queued"] == 3 and user["models"] == ["llama*"]
    response = admin_client.post(f"/admin/users/{bob.id}/edit", data={"daily_tokens": "-1"})
    assert response.status_code == 400
    assert f'id="edit-{bob.id}-daily_tokens-error"' in response.get_data(as_text=True)


def test_editing_something_gone_says_so(admin_client):
    response = admin_client.post("/admin/apikeys/999/edit", data={"rpm": "1"}, follow_redirects=True)
    assert "That API key does not exist." in response.get_data(as_text=True)


def test_every_refused_field_is_shown_at_once_in_words(admin_client, bob):
    form = {"rpm": "lots", "max_queued": "0", "daily_tokens": "-3", "models": "bad pattern!"}
    response = admin_client.post(f"/admin/users/{bob.id}/edit", data=form)
    body = response.get_data(as_text=True)
    assert response.status_code == 400
    errors = dict(re.findall(rf'id="edit-{bob.id}-(\w+)-error">([^<]+)</p>', body))
    assert set(errors) == {"rpm", "max_queued", "daily_tokens", "models"}
    assert errors["rpm"].startswith("Requests per minute: must be a whole number")
    assert errors["rpm"].endswith("or empty for no limit")
    assert errors["max_queued"].startswith("Max waiting:")
    assert errors["daily_tokens"].startswith("Tokens per 24 h:")
    assert not any("null" in message or "Rpm" in message for message in errors.values())
    api = admin_client.patch(f"/api/admin/users/{bob.id}", json={"rpm": "lots", "max_queued": 0})
    assert api.status_code == 400  # the API keeps its JSON names
    assert (
        api.get_json()["error"].startswith(("rpm ", "max_queued ")) and "or null" in api.get_json()["error"]
    )


def test_a_key_is_created_with_its_limits_in_one_form_and_every_error_is_shown(admin_client):
    form = {"name": "", "priority": "5", "rpm": "0", "daily_tokens": "many", "models": "qwen*"}
    refused = admin_client.post("/admin/apikeys/", data=form)
    body = refused.get_data(as_text=True)
    assert refused.status_code == 400
    assert 'id="create-rpm-error">Requests per minute: must be a whole number' in body
    assert 'id="create-daily_tokens-error">Tokens per 24 h:' in body
    assert "name-error" in body  # the name's own error too, at the same time
    assert 'value="qwen*"' in body  # what was typed stays
    made = admin_client.post(
        "/admin/apikeys/", data={**form, "name": "agent", "rpm": "30", "daily_tokens": ""}
    )
    assert made.status_code == 200 and "sdk_" in made.get_data(as_text=True)
    key = admin_client.get("/api/admin/apikeys").get_json()[0]
    assert (key["name"], key["rpm"], key["models"], key["daily_tokens"]) == ("agent", 30, ["qwen*"], None)
