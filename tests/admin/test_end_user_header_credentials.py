"""The end-user header may not be a credential header (docs/contract.md §16).

Its value is stored in the request log as the end user's name, so naming ``Proxy-Authorization``
(or any credential header, in any case) would write a secret there: 400 through the admin API and
the panel's form, and nothing is saved.
"""

from __future__ import annotations

import re

import pytest

from tests.admin.helpers import csrf_token, login

CREDENTIAL_HEADERS = [
    "Authorization",
    "Proxy-Authorization",
    "proxy-AUTHORIZATION",
    "Cookie",
    "X-API-Key",
    "x-api-key",
]


@pytest.fixture
def key_id(api) -> int:
    return api.post("/api/admin/apikeys", json={"name": "shared", "priority": 5}).get_json()["id"]


@pytest.mark.parametrize("header", CREDENTIAL_HEADERS)
def test_the_admin_api_refuses_a_credential_header(api, key_id, header):
    response = api.patch(f"/api/admin/apikeys/{key_id}", json={"end_user_header": header})
    assert response.status_code == 400
    assert response.get_json()["error"] == (
        f"end_user_header: {header} carries credentials or routing and cannot name an end user"
    )
    assert api.get("/api/admin/apikeys").get_json()[0]["end_user_header"] is None
    assert api.patch(f"/api/admin/apikeys/{key_id}", json={"end_user_header": "X-User"}).status_code == 200


@pytest.mark.parametrize("header", ["Proxy-Authorization", "Cookie"])
def test_the_panel_form_refuses_a_credential_header(app_factory, alice, header):
    client = app_factory(WTF_CSRF_ENABLED=True).test_client()
    assert login(client, "alice").status_code == 302
    client.post(
        "/admin/apikeys/",
        data={"name": "shared", "priority": "5", "csrf_token": csrf_token(client, "/admin/apikeys/")},
    )
    key = client.get("/api/admin/apikeys").get_json()[0]
    form = {
        "csrf_token": csrf_token(client, "/admin/apikeys/"),
        "name": "shared",
        "priority": "5",
        "end_user_header": header,
    }
    response = client.post(f"/admin/apikeys/{key['id']}/edit", data=form)
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    error = re.search(rf'id="edit-{key["id"]}-end_user_header-error">([^<]+)</p>', body)
    assert error and "carries credentials" in error.group(1)
    assert client.get("/api/admin/apikeys").get_json()[0]["end_user_header"] is None
