"""``/openapi.json`` and ``/docs`` (docs/contract.md §3): valid OpenAPI naming every public route.

Anyone may read it.
"""

from __future__ import annotations

import re

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from admin_app.api.shapes import JSON_ENDPOINTS
from common.dispatch import is_admin_path
from common.gateway_openapi import PATTERNS
from proxy_app import create_app as create_gateway
from proxy_app.routes import ALIAS_PREFIX, TABLE, resolve
from tests.admin.helpers import PASSWORDS

IGNORED_METHODS = {"HEAD", "OPTIONS"}
CONTRACT_API_KEY_FIELDS = ("id", "name", "prefix", "priority", "created_at", "last_used", "is_active")


def openapi_path(rule: str) -> str:
    """A werkzeug rule as an OpenAPI path template."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def operations(document: dict) -> set[tuple[str, str]]:
    """Every (METHOD, path) the document describes."""
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item}


@pytest.fixture
def document(client) -> dict:
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    return response.get_json()


@pytest.mark.costly  # validates the whole OpenAPI document
def test_the_document_is_valid_openapi_3(document):
    validate(document)
    assert document["openapi"].startswith("3.1")
    assert document["info"]["title"] == "Seadragon Gateway"


def test_it_names_every_route_of_the_admin_app(app, document):
    expected = {
        (method, openapi_path(rule.rule))
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods - IGNORED_METHODS
    }
    assert expected - operations(document) == set()


def test_it_names_every_route_of_the_gateway(settings, document):
    expected = {(method, path) for path, entry in TABLE.items() for method in entry.methods}
    gateway = create_gateway(settings=settings)
    for rule in gateway.url_map.iter_rules():
        if rule.endpoint not in ("static", "gateway.api"):  # the catch-all is the table above
            expected |= {(method, openapi_path(rule.rule)) for method in rule.methods - IGNORED_METHODS}
    missing = expected - operations(document)
    assert missing == set()
    for path in ("/", "/health", "/metrics", "/api/admin/stats", "/api/chat", "/docs"):
        assert path in document["paths"]
    assert ALIAS_PREFIX + "{endpoint}" in document["paths"]


def test_the_routes_matched_by_pattern_are_documented_with_the_methods_the_table_takes(document):
    for template, sample in PATTERNS.items():
        documented = {method.upper() for method in document["paths"][template]}
        for method in documented:
            resolve(method, sample)  # raises if the table does not take it
    assert set(document["paths"]["/api/blobs/{digest}"]) == {"head", "post"}
    assert set(document["paths"]["/v1/models/{id}"]) == {"get"}


def test_it_tells_who_may_call_what(document):
    pull = document["paths"]["/api/pull"]["post"]
    assert pull["tags"] == ["Model management"] and "whitelisted IPs only" in pull["description"]
    chat = document["paths"]["/api/chat"]["post"]
    assert "Queued" in chat["description"] and "application/x-ndjson" in chat["responses"]["200"]["content"]
    assert "X-Seadragon-Queue-Wait" in chat["responses"]["200"]["headers"]
    openai_chat = document["paths"]["/v1/chat/completions"]["post"]
    assert "text/event-stream" in openai_chat["responses"]["200"]["content"]
    assert {"metricsToken": []} in document["paths"]["/metrics"]["get"]["security"]
    assert document["paths"]["/health"]["get"].get("security") is None
    assert document["paths"]["/auth/token"]["post"]["security"] == []
    assert document["paths"]["/api/admin/apikeys"]["get"]["security"] == [{"bearer": []}, {"session": []}]


def test_every_json_endpoint_has_its_shapes_and_none_is_stale(app, document):
    json_endpoints = {rule.endpoint for rule in app.url_map.iter_rules() if rule.endpoint.startswith("api.")}
    assert json_endpoints <= set(JSON_ENDPOINTS)
    assert set(JSON_ENDPOINTS) <= set(app.view_functions)
    created = document["paths"]["/api/admin/apikeys"]["post"]
    body = created["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/NewAPIKey"}
    key = document["components"]["schemas"]["APIKey"]
    assert set(key["required"]) == set(CONTRACT_API_KEY_FIELDS)
    assert "key" not in key["properties"]  # the list never shows the key


def test_anyone_may_read_the_docs_and_the_page_loads_nothing_from_elsewhere(client):
    assert is_admin_path("/docs") and is_admin_path("/openapi.json")  # one base URL: Flask answers
    response = client.get("/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    body = response.get_data(as_text=True)
    sources = re.findall(r'(?:src|href)="([^"]+)"', body)
    assert "/static/js/vendor/swagger-ui/swagger-ui-bundle.js" in sources and "/static/js/docs.js" in sources
    assert not [source for source in sources if "//" in source]
    assert "<script>" not in body  # no inline script: the CSP forbids it
    for source in sources:
        if source.startswith("/static/"):
            asset = client.get(source)
            asset.close()  # static files are streamed from an open file
            assert asset.status_code == 200, source


@pytest.mark.costly  # validates answers against the schema
def test_real_answers_of_the_admin_api_fit_the_documented_shapes(admin_client, document):
    def fits(response, method: str, path: str) -> dict:
        operation = document["paths"][path][method.lower()]
        schema = operation["responses"][str(response.status_code)]["content"]["application/json"]["schema"]
        # Validated against the document itself, so that its $refs resolve.
        Draft202012Validator({**schema, "components": document["components"]}).validate(response.get_json())
        return response.get_json()

    key = fits(
        admin_client.post("/api/admin/apikeys", json={"name": "n", "priority": 1}),
        "POST",
        "/api/admin/apikeys",
    )
    fits(admin_client.get("/api/admin/apikeys"), "GET", "/api/admin/apikeys")
    fits(admin_client.delete(f"/api/admin/apikeys/{key['id']}"), "DELETE", "/api/admin/apikeys/{key_id}")
    fits(admin_client.delete("/api/admin/apikeys/999"), "DELETE", "/api/admin/apikeys/{key_id}")
    fits(
        admin_client.post("/api/admin/apikeys", json={"name": "n", "priority": "1"}),
        "POST",
        "/api/admin/apikeys",
    )
    fits(
        admin_client.post("/api/admin/whitelist", json={"ip": "10.0.0.9/24"}), "POST", "/api/admin/whitelist"
    )
    fits(admin_client.get("/api/admin/whitelist"), "GET", "/api/admin/whitelist")
    fits(admin_client.delete("/api/admin/whitelist/10.0.0.0%2F24"), "DELETE", "/api/admin/whitelist/{ident}")
    token = fits(admin_client.post("/api/admin/tokens", json={}), "POST", "/api/admin/tokens")
    fits(admin_client.delete(f"/api/admin/tokens/{token['id']}"), "DELETE", "/api/admin/tokens/{token_id}")
    fits(admin_client.get("/api/admin/tokens"), "GET", "/api/admin/tokens")
    fits(
        admin_client.post("/auth/token", json={"username": "alice", "password": PASSWORDS["alice"]}),
        "POST",
        "/auth/token",
    )
