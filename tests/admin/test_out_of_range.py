"""Out-of-range dates, ids and cursors are a 400 naming them, never a 500 (docs/contract.md §16).

Every admin-app route with an id in its path is listed here, and a test holds the list to the
url_map, so a route added later must join it. The request-log filters and cursors are tried on
the API, the page and the CSV; the chat's reply endpoint (the gateway) is in
tests/proxy/test_out_of_range_ids.py.
"""

from __future__ import annotations

import base64
import re

import pytest

BIG = "99999999999999999999999"  # past 2^63: no database holds it, and binding it overflows
LAST = str(2**63 - 1)  # the largest id there can be: simply not found

ID_ROUTES = [
    ("DELETE", "/api/admin/apikeys/{id}"),
    ("PATCH", "/api/admin/apikeys/{id}"),
    ("DELETE", "/api/admin/tokens/{id}"),
    ("PATCH", "/api/admin/users/{id}"),
    ("DELETE", "/api/admin/whitelist/{id}"),
    ("PATCH", "/api/admin/whitelist/{id}"),
    ("POST", "/admin/apikeys/{id}/edit"),
    ("POST", "/admin/apikeys/{id}/revoke"),
    ("POST", "/admin/tokens/{id}/revoke"),
    ("POST", "/admin/users/{id}/disable"),
    ("POST", "/admin/users/{id}/edit"),
    ("POST", "/admin/whitelist/{id}/delete"),
    ("POST", "/admin/whitelist/{id}/edit"),
    ("DELETE", "/chat/api/conversations/{id}"),
    ("GET", "/chat/api/conversations/{id}"),
    ("PATCH", "/chat/api/conversations/{id}"),
    ("GET", "/chat/api/conversations/{id}/export"),
    ("DELETE", "/account/api/keys/{id}"),
]
_ARGUMENT = re.compile(r"<(?:(\w+)(?:\(([^)]*)\))?:)?(\w+)>")


def _placeholder(match: re.Match) -> str:
    converter, options, name = match.groups()
    if converter == "int" or name in ("ident",):
        return "{id}"
    return options.split(",")[0].strip() if options else "x"


def test_every_route_with_an_id_is_listed(app):
    found = set()
    for rule in app.url_map.iter_rules():
        if "<int:" in rule.rule or "<path:ident>" in rule.rule:
            path = _ARGUMENT.sub(_placeholder, rule.rule)
            if "/admin/users/{id}/" in path and not path.endswith("/edit"):
                path = "/admin/users/{id}/disable"  # one verb of <any(disable, enable, promote, demote)>
            found |= {(method, path) for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert found == set(ID_ROUTES)


@pytest.mark.parametrize(("method", "path"), ID_ROUTES)
def test_an_id_past_any_row_is_400_naming_it(admin_client, method, path):
    body = {"name": "x"} if method in ("PATCH", "POST") else None
    response = admin_client.open(path.format(id=BIG), method=method, json=body)
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert BIG in response.get_data(as_text=True)
    largest = admin_client.open(path.format(id=LAST), method=method, json=body)
    assert largest.status_code == (302 if path.startswith("/admin/") else 404)  # the panel flashes it


TIMES = [
    "9999-99-99",
    "0001-01-01T00:00:00+23:59",  # fine as written, before year 1 in UTC
    "9999-12-31T23:59:59-23:59",  # after year 9999 in UTC
    "10000-01-01",
]


@pytest.mark.parametrize("name", ["since", "until"])
@pytest.mark.parametrize("value", TIMES)
@pytest.mark.parametrize("path", ["/api/admin/requests", "/admin/requests.csv", "/admin/requests"])
def test_an_out_of_range_time_filter_is_400_naming_it(admin_client, path, name, value):
    response = admin_client.get(path, query_string={name: value})
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert name in response.get_data(as_text=True)


def cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "value",
    [
        "AAAA",
        BIG,
        cursor(f"2026-12-01T00:00:00+00:00|{BIG}"),  # an id past 2^63
        cursor("2026-12-01T00:00:00+00:00|-1"),
        cursor("9999-12-31T23:59:59-23:59|5"),  # overflows converting to UTC
        cursor("0001-01-01T00:00:00+23:59|5"),
        cursor("2026-12-01|x"),
        "!" * 5000,
    ],
)
def test_a_malformed_or_overflowing_cursor_is_400(admin_client, value):
    response = admin_client.get("/api/admin/requests", query_string={"cursor": value})
    assert response.status_code == 400
    assert "cursor" in response.get_json()["error"]


@pytest.mark.parametrize("value", [BIG, "-1", "0x10", "1e3"])
def test_an_out_of_range_audit_cursor_is_400(admin_client, value):
    response = admin_client.get("/api/admin/audit", query_string={"before": value})
    assert response.status_code == 400 and "before" in response.get_json()["error"]


@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"])
def test_an_out_of_range_key_expiry_is_400(admin_client, value):
    created = admin_client.post("/api/admin/apikeys", json={"name": "exp", "priority": 5})
    key_id = created.get_json()["id"]
    patched = admin_client.patch(f"/api/admin/apikeys/{key_id}", json={"expires_at": value})
    assert patched.status_code == 400 and "expires_at" in patched.get_json()["error"]
