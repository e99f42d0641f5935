"""API documentation: ``/openapi.json`` built from the route table, and ``/docs`` rendering it."""

from __future__ import annotations

from html import escape

from quart import Blueprint, Response, current_app

from proxy_app.routes import TABLE, Lane

bp = Blueprint("docs", __name__)

SUMMARIES = {
    "/api/generate": 'Generate a completion (Ollama). Streams NDJSON unless "stream": false.',
    "/api/chat": 'Chat (Ollama). Streams NDJSON unless "stream": false.',
    "/api/embed": "Embeddings for one or more inputs (Ollama).",
    "/api/embeddings": "Embedding of one prompt (Ollama, legacy).",
    "/v1/chat/completions": 'Chat completion (OpenAI). SSE with "stream": true, ending data: [DONE].',
    "/v1/completions": 'Text completion (OpenAI). SSE with "stream": true.',
    "/v1/embeddings": "Embeddings (OpenAI).",
    "/api/tags": "Models installed on every healthy backend, merged.",
    "/api/ps": "Models loaded right now on every healthy backend, merged.",
    "/api/version": "Ollama's version.",
    "/api/show": "Details of one model.",
    "/v1/models": "Models (OpenAI list shape), merged over the healthy backends.",
    "/api/pull": "Download a model (admins and whitelisted IPs).",
    "/api/push": "Upload a model to a registry (admins and whitelisted IPs).",
    "/api/create": "Create a model (admins and whitelisted IPs).",
    "/api/copy": "Copy a model (admins and whitelisted IPs).",
    "/api/delete": "Delete a model (admins and whitelisted IPs).",
}
WHO = {
    Lane.QUEUED: "any identity; waits in the priority queue for a slot",
    Lane.FAST: "any identity; never queued",
    Lane.MANAGE: "admin user or whitelisted IP; others 403; never queued",
}
EXTRA_PATHS = {
    "/": ("get", 'Who answers here: {"message": "Seadragon LLM Server"}.', "anyone"),
    "/health": ("get", "Liveness and each backend's state (no secrets).", "anyone"),
    "/v1/models/{id}": ("get", "One model (OpenAI shape).", WHO[Lane.FAST]),
    "/api/blobs/{digest}": (
        "post",
        "Upload a model file by digest (HEAD checks it exists).",
        WHO[Lane.MANAGE],
    ),
    "/api/ollama/{endpoint}": ("post", "Alias of /api/{endpoint}, same rules.", "as /api/{endpoint}"),
    "/api/admin/stats": ("get", "Live queue, slots, rates and waits.", "admin session or admin access token"),
    "/metrics": ("get", "Prometheus metrics.", "admin, or Bearer METRICS_TOKEN"),
}
STYLE = (
    "body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:70rem;padding:0 1rem}"
    "table{border-collapse:collapse;width:100%}"
    "td,th{border-bottom:1px solid #ddd;padding:.4rem;text-align:left}"
)
ERROR = {
    "description": "Error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def openapi_document() -> dict:
    """The OpenAPI 3.1 description of the gateway's surface."""
    paths: dict[str, dict] = {}
    for path, entry in TABLE.items():
        for method in entry.methods:
            paths.setdefault(path, {})[method.lower()] = _operation(SUMMARIES[path], WHO[entry.lane])
    for path, (method, summary, who) in EXTRA_PATHS.items():
        paths.setdefault(path, {})[method] = _operation(summary, who)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Seadragon Gateway",
            "version": "1",
            "description": "Ollama- and OpenAI-compatible API in front of a GPU box, with a priority queue. "
            'Bodies and streams are Ollama\'s own; errors are {"error": message}.',
        },
        "paths": paths,
        "components": {
            "schemas": {"Error": {"type": "object", "properties": {"error": {"type": "string"}}}},
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API key (sdk_…) or access token",
                },
                "session": {"type": "apiKey", "in": "cookie", "name": "seadragon_session"},
            },
        },
        "security": [{"apiKey": []}, {"bearer": []}, {"session": []}, {}],
    }


def _operation(summary: str, who: str) -> dict:
    return {
        "summary": summary,
        "description": f"Who: {who}.",
        "x-who": who,
        "responses": {
            "200": {"description": "Ollama's answer, passed through"},
            "401": ERROR,
            "403": ERROR,
            "404": ERROR,
            "503": ERROR,
        },
    }


@bp.get("/openapi.json")
async def openapi() -> dict:
    """The OpenAPI document."""
    return openapi_document()


@bp.get("/docs")
async def docs() -> Response:
    """The API documentation as a page (no scripts, nothing from a CDN)."""
    document = openapi_document()
    rows = "".join(
        f"<tr><td><code>{escape(method.upper())}</code></td><td><code>{escape(path)}</code></td>"
        f"<td>{escape(operation['summary'])}</td><td>{escape(operation['x-who'])}</td></tr>"
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    )
    origins = ", ".join(current_app.config["SEADRAGON"].cors_origins) or "none"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Seadragon Gateway API</title>
<style>{STYLE}</style>
</head><body>
<h1>Seadragon Gateway API</h1>
<p>Use this base URL in place of Ollama's; OpenAI clients use <code>&lt;base&gt;/v1</code>.
Send an API key as <code>X-API-Key: sdk_…</code> or <code>Authorization: Bearer sdk_…</code>, call from a
whitelisted IP, or be logged in (session cookie or <code>Authorization: Bearer</code> access token from
<code>POST /auth/token</code>). Errors are <code>{{"error": "message"}}</code>. Proxied responses carry
<code>X-Request-ID</code>, <code>X-Seadragon-Source</code> and <code>X-Seadragon-Queue-Wait</code> (ms).
CORS origins: {escape(origins)}. Machine-readable: <a href="/openapi.json">/openapi.json</a>.</p>
<table><thead><tr><th>method</th><th>path</th><th>what</th><th>who</th></tr></thead><tbody>{rows}</tbody></table>
</body></html>"""
    return Response(page, content_type="text/html; charset=utf-8")
