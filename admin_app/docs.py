"""``/openapi.json`` and ``/docs`` (Swagger UI): the whole HTTP surface, generated from the code.

Admin paths come from the Flask url_map through apispec's Flask plugin (a view may add OpenAPI
YAML after ``---`` in its docstring); the gateway's paths from ``common.gateway_openapi``, which
reads the route table both apps share (the admin app never imports the gateway). Only the JSON
shapes of docs/contract.md §3 are written out here, by endpoint.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

from flask import Blueprint, Flask, current_app, render_template
from werkzeug.routing import Rule

from admin_app.api.account_shapes import ACCOUNT_ENDPOINTS, ACCOUNT_SCHEMAS
from admin_app.api.shapes import ADMIN_SECURITY, JSON_ENDPOINTS, SCHEMAS, SECURITY_SCHEMES, TAGS, error, ref
from common.settings import ROOT

bp = Blueprint("docs", __name__)

PUBLIC_PAGES = {"auth.login", "auth.register", "auth.logout", "docs.page", "password_reset.page"}
TAG_BY_BLUEPRINT = {
    "api": "Admin API",
    "auth": "Accounts",
    "docs": "Documentation",
    "account_api": "Accounts",
}
# Open to a signed-in user's session or access token, not only to admins (docs/contract.md §14).
USER_APIS = {"account_api"}
# <converter(arguments):name> in a werkzeug rule, e.g. <int:key_id>, <any(enable, disable):verb>.
CONVERTER = re.compile(r"<(?:(\w+)(?:\(([^)]*)\))?:)?(\w+)>")


def build_document(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the admin app's url_map and the gateway's route table."""
    # Imported here, not at start-up: the panel never waits for the gateway or apispec to load.
    from apispec import APISpec
    from apispec_webframeworks.flask import FlaskPlugin

    from common import gateway_openapi as gateway_docs  # the gateway's part, from the shared route table

    spec = APISpec(
        title="Seadragon Gateway",
        version=_version(),
        openapi_version="3.1.0",
        plugins=[FlaskPlugin()],
        info={"description": _description()},
        tags=TAGS,
    )
    for name, scheme in SECURITY_SCHEMES.items():
        spec.components.security_scheme(name, scheme)
    for name, schema in {**gateway_docs.SCHEMAS, **SCHEMAS, **ACCOUNT_SCHEMAS}.items():
        spec.components.schema(name, schema)
    for rule in sorted(app.url_map.iter_rules(), key=lambda rule: rule.rule):
        if rule.endpoint == "static":
            continue
        view = app.view_functions[rule.endpoint]
        methods = sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
        operations = {
            method.lower(): _operation(rule, method, view.__doc__ or "", len(methods) > 1)
            for method in methods
        }
        spec.path(view=view, app=app, operations=operations)
    document = spec.to_dict()
    document["paths"].update(gateway_docs.gateway_paths())
    document["paths"] = dict(sorted(document["paths"].items()))
    return document


def _operation(rule: Rule, method: str, doc: str, shared: bool) -> dict[str, Any]:
    endpoint = rule.endpoint
    details = JSON_ENDPOINTS.get(endpoint) or ACCOUNT_ENDPOINTS.get(endpoint, {})
    blueprint = endpoint.partition(".")[0]
    operation: dict[str, Any] = {
        "tags": [TAG_BY_BLUEPRINT.get(blueprint, "Admin panel")],
        "summary": doc.strip().splitlines()[0].rstrip(".") if doc.strip() else endpoint,
        "operationId": f"{endpoint}_{method.lower()}" if shared else endpoint,
    }
    parameters = [_parameter(name, rule) for name in sorted(rule.arguments)]
    if parameters:
        operation["parameters"] = parameters
    if details.get("public") or endpoint in PUBLIC_PAGES:
        operation["security"] = []
    else:
        operation["security"] = ADMIN_SECURITY if blueprint in ("api", *USER_APIS) else [{"session": []}]
    if "body" in details:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ref(details["body"])}},
        }
    if "responses" in details:
        operation["responses"] = dict(details["responses"])
        if blueprint in USER_APIS:
            operation["responses"].update(error("401", "Not signed in."))
        elif not details.get("public"):
            operation["responses"].update(
                error("401", "Not signed in.") | error("403", "Not an administrator.")
            )
    else:
        operation["responses"] = _page_responses(method, endpoint in PUBLIC_PAGES)
    return operation


def _page_responses(method: str, public: bool) -> dict[str, dict]:
    page = {"content": {"text/html": {"schema": {"type": "string"}}}}
    if method == "GET":
        responses = {"200": {"description": "The page.", **page}}
    else:
        responses = {
            "302": {"description": "Done; on to the next page."},
            "400": {"description": "The form again, with errors.", **page},
        }
    if not public:
        responses["302"] = {"description": "To the sign-in page when signed out (or on after a form)."}
        responses["403"] = {"description": "Signed in, not an administrator.", **page}
    return responses


def _parameter(name: str, rule: Rule) -> dict[str, Any]:
    converter, arguments = next(
        (found[0], found[1]) for found in CONVERTER.findall(rule.rule) if found[2] == name
    )
    schema: dict[str, Any] = {"type": "string"}
    if converter == "int":
        schema = {"type": "integer", "minimum": 0}
    elif converter == "any":
        schema = {"type": "string", "enum": sorted(item.strip() for item in arguments.split(","))}
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def _description() -> str:
    return (
        "The gateway in front of Ollama. Use its base URL in place of Ollama's; OpenAI clients use "
        "`<base>/v1`. Callers are, in this order: an API key (`X-API-Key` or `Authorization: Bearer sdk_…`, "
        "priority of the key), a whitelisted IP (no credentials), a signed-in user (session cookie or "
        'access token). Errors are `{"error": "message"}`. Proxied responses carry `X-Request-ID`, '
        "`X-Seadragon-Source` and `X-Seadragon-Queue-Wait` (ms)."
    )


def openapi_document() -> dict[str, Any]:
    """The document for the current app, built once per app."""
    cache = current_app.extensions.setdefault("seadragon_openapi", {})
    if "document" not in cache:
        cache["document"] = build_document(current_app)
    return cache["document"]


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 document of every public route."""
    return openapi_document()


@bp.get("/docs")
def page():
    """The API documentation, browsable (Swagger UI, served from this site)."""
    return render_template("docs/index.html")
