"""Whitelist entries are stored normalised, through the API and through the panel form."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("10.0.0.5", "10.0.0.5"),
        ("10.0.0.5/24", "10.0.0.0/24"),
        ("10.0.0.5/32", "10.0.0.5"),
        (" 192.168.1.1 ", "192.168.1.1"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("2001:db8::1/32", "2001:db8::/32"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("fe80::1/128", "fe80::1"),
    ],
)
def test_it_stores_addresses_normalised(admin_client, given, stored):
    response = admin_client.post("/api/admin/whitelist", json={"ip": given})
    assert response.status_code == 201 and response.get_json()["ip"] == stored
    assert admin_client.delete(f"/api/admin/whitelist/{stored.replace('/', '%2F')}").status_code == 200


def test_the_form_adds_an_entry_and_lists_it(admin_client):
    response = admin_client.post(
        "/admin/whitelist/", data={"ip": "10.0.0.5/24", "label": "lab", "priority": "2"}
    )
    assert response.status_code == 302
    page = admin_client.get(response.location).get_data(as_text=True)
    assert "Added 10.0.0.0/24 to the whitelist." in page
    assert "10.0.0.0/24" in page and "lab" in page


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"ip": "10.0.0.300", "priority": "1"}, "is not a valid IPv4 or IPv6 address"),
        ({"ip": "", "priority": "1"}, "This field is required"),
        ({"ip": "10.0.0.1", "priority": "abc"}, "Not a valid integer value"),
        ({"ip": "10.0.0.1", "priority": "101"}, "Enter a whole number from 0 to 100."),
        (
            {"ip": "10.0.0.1", "priority": "1", "label": "x" * 101},
            "Field cannot be longer than 100 characters",
        ),
    ],
)
def test_the_form_shows_field_errors(admin_client, data, message):
    response = admin_client.post("/admin/whitelist/", data=data)
    body = response.get_data(as_text=True)
    assert response.status_code == 400
    assert 'class="field-error"' in body and message in body
    assert admin_client.get("/api/admin/whitelist").get_json() == []


def test_the_form_reports_a_duplicate_under_the_address_field(admin_client):
    admin_client.post("/admin/whitelist/", data={"ip": "10.0.0.0/24", "priority": "1"})
    response = admin_client.post("/admin/whitelist/", data={"ip": "10.0.0.9/24", "priority": "1"})
    assert response.status_code == 409
    assert "10.0.0.0/24 is already on the whitelist" in response.get_data(as_text=True)


def test_removing_an_entry_asks_for_confirmation_and_posts(admin_client):
    admin_client.post("/admin/whitelist/", data={"ip": "10.0.0.7", "priority": "1"})
    page = admin_client.get("/admin/whitelist/").get_data(as_text=True)
    assert 'data-confirm="Remove 10.0.0.7 from the whitelist?"' in page
    assert admin_client.get("/admin/whitelist/1/delete").status_code == 405
    response = admin_client.post("/admin/whitelist/1/delete", follow_redirects=True)
    assert "Removed 10.0.0.7 from the whitelist." in response.get_data(as_text=True)
    assert admin_client.get("/api/admin/whitelist").get_json() == []


def test_the_empty_whitelist_says_so(admin_client):
    assert "No whitelisted addresses yet" in admin_client.get("/admin/whitelist/").get_data(as_text=True)
