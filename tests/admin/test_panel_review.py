"""docs/contract.md §11 over HTTP: invites with a note, spent sign-up links, a request's detail view."""

from __future__ import annotations

import re

import pytest


def _token(api, **body) -> dict:
    response = api.post("/api/admin/tokens", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_an_invite_carries_a_for_whom_note_in_the_api_and_the_list(api, admin_client):
    created = _token(api, note="  Dora, accounting  ", expires_in_days=2)
    assert created["note"] == "Dora, accounting"
    listed = api.get("/api/admin/tokens").get_json()[0]
    assert listed["note"] == "Dora, accounting" and listed["id"] == created["id"]
    assert "note" not in _token(api)  # optional: without one the shape is the contract's, exactly
    page = admin_client.get("/admin/tokens/").get_data(as_text=True)
    assert re.search(r'data-cell="note">Dora, accounting<', page)


@pytest.mark.parametrize(
    ("note", "message"),
    [("x" * 201, "note must be at most 200 characters"), (7, "note must be a string")],
)
def test_a_bad_note_is_refused_naming_the_field(api, note, message):
    response = api.post("/api/admin/tokens", json={"note": note})
    assert response.status_code == 400
    assert response.get_json() == {"error": message}


def test_the_panel_form_creates_an_invite_with_a_note(admin_client):
    response = admin_client.post("/admin/tokens/", data={"expires_in_days": "3", "note": "Erin"})
    assert response.status_code == 200
    assert "New registration token for “Erin”" in response.get_data(as_text=True)
    too_long = admin_client.post("/admin/tokens/", data={"expires_in_days": "3", "note": "e" * 201})
    assert too_long.status_code == 400
    assert "At most 200 characters." in too_long.get_data(as_text=True)


@pytest.mark.parametrize(
    ("spend", "says"),
    [
        ("use", "This registration token has already been used."),
        ("revoke", "This registration token has been revoked."),
    ],
)
def test_a_spent_sign_up_link_says_so_at_once_instead_of_the_form(app, api, spend, says):
    created = _token(api)
    visitor = app.test_client()
    if spend == "use":
        signed_up = visitor.post(
            "/auth/register",
            data={"token": created["token"], "username": "dave", "password": "dave-password"},
        )
        assert signed_up.status_code == 302
    else:
        assert api.delete(f"/api/admin/tokens/{created['id']}").status_code == 200
    response = app.test_client().get(created["register_url"])
    body = response.get_data(as_text=True)
    assert response.status_code == 410
    assert says in body
    assert 'name="password"' not in body and "Create account</button>" not in body


def test_a_live_sign_up_link_shows_the_form_prefilled(app, api):
    created = _token(api)
    response = app.test_client().get(created["register_url"])
    assert response.status_code == 200
    assert f'value="{created["token"]}"' in response.get_data(as_text=True)


def test_a_requests_detail_view_shows_every_field_of_its_row(admin_client, log, people):
    request_id = log(
        5,
        source="custom_app",
        api_key_id=people["key"],
        client_ip="203.0.113.9",
        backend="http://gpu-1:11434",
        status=502,
        stage="streaming",
        error="upstream closed the stream",
        queue_wait_ms=1500,
        ttfb_ms=1720,
        duration_ms=65_000,
        prompt_tokens=12,
        completion_tokens=340,
    )
    response = admin_client.get(f"/admin/requests/{request_id}")
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    for text in (
        request_id,
        "POST /api/chat",
        "llama3.2",
        "http://gpu-1:11434",
        "502 · ended while streaming",
        "upstream closed the stream",
        "API key <a",
        "ci-bot",
        "203.0.113.9",
        "1.5 s",
        "1.7 s",
        "1 min 05 s",
        ">12<",
        ">340<",
        " UTC",
    ):
        assert text in body, text
    listing = admin_client.get("/admin/requests").get_data(as_text=True)
    assert f'href="/admin/requests/{request_id}"' in listing
    assert '<span class="row-error" data-cell="error">upstream closed the stream</span>' in listing


def test_an_unknown_request_id_is_a_404_page(admin_client):
    for request_id in ("no-such-request", "x" * 300):
        response = admin_client.get(f"/admin/requests/{request_id}")
        assert response.status_code == 404
        assert "Request not found" in response.get_data(as_text=True)


def test_the_detail_view_is_for_admins_only(user_client, log):
    request_id = log()
    assert user_client.get(f"/admin/requests/{request_id}").status_code == 403
