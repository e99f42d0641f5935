"""The admin app's routes, read from its url_map, for the access and CSRF matrices."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask

# Sample values for URL variables, by name: valid enough to reach the view.
SAMPLE_ARGUMENTS = {
    "entry_id": 1,
    "token_id": 1,
    "key_id": 1,
    "user_id": 1,
    "ident": "10.0.0.1",
    "verb": "enable",
    "conversation_id": 1,
    "request_id": "req-sample",
    "model": "llama3.2",
}
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
# Public by design: signing in, signing up, getting a bearer token, the API documentation.
PUBLIC_ENDPOINTS = {
    "static",
    "auth.login",
    "auth.register",
    "auth.token",
    "auth.logout",
    "auth.account",
    "docs.page",
    "docs.openapi",
    "password_reset.page",  # the single-use link is the credential (docs/contract.md §14)
}
# For every signed-in user, not only admins (docs/contract.md §9): tested in tests/admin/test_chat.py.
USER_ENDPOINTS = {
    "home.account",
    "chat.page",
    "chat.conversations_list",
    "chat.conversations_create",
    "chat.conversations_read",
    "chat.conversations_update",
    "chat.conversations_delete",
    "chat.conversations_export",
    # docs/contract.md §14: a user's own keys and usage, tested in tests/admin/test_personal_keys.py.
    "account_api.keys_list",
    "account_api.keys_create",
    "account_api.keys_revoke",
    "account_api.usage",
}


@dataclass(frozen=True)
class Route:
    """One method on one URL."""

    method: str
    url: str
    endpoint: str

    @property
    def is_api(self) -> bool:
        """JSON endpoints answer 401/403 in JSON instead of redirecting."""
        return self.url.startswith(("/api/", "/chat/api/", "/account/api/"))

    def __str__(self) -> str:
        return f"{self.method} {self.url} ({self.endpoint})"


def routes(app: Flask, *, methods: set[str] | None = None, include_public: bool = False) -> list[Route]:
    """Every (method, URL) of ``app``, with sample values filled in."""
    found = []
    with app.test_request_context():
        adapter = app.url_map.bind("localhost")
        for rule in app.url_map.iter_rules():
            if rule.endpoint in PUBLIC_ENDPOINTS | USER_ENDPOINTS and not include_public:
                continue
            if rule.endpoint == "static":
                continue
            url = adapter.build(rule.endpoint, {name: SAMPLE_ARGUMENTS[name] for name in rule.arguments})
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                if methods is None or method in methods:
                    found.append(Route(method, url, rule.endpoint))
    return found
