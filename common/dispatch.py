"""One base URL for both apps: admin paths go to Flask, the rest to Quart."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]

# Paths served by the admin (Flask) app. /api/admin/stats stays with the
# gateway: the live queue lives in the gateway's process.
ADMIN_PREFIXES = ("/auth/", "/admin/", "/api/admin/", "/static/", "/chat/", "/account/")
# The API documentation is generated from the admin app's url_map and the gateway's route table.
ADMIN_EXACT = ("/auth", "/admin", "/api/admin", "/docs", "/openapi.json", "/chat", "/account")
# The chat's answers stream from the gateway: they go through its queue (docs/contract.md §9);
# so does the queue itself (docs/contract.md §8): /api/admin/queue and /api/admin/queue/{request_id},
# and the model list (docs/contract.md §12): only the gateway knows what each backend has loaded.
GATEWAY_EXCEPTIONS = ("/api/admin/stats", "/chat/api/reply", "/api/admin/queue", "/api/admin/models")
GATEWAY_EXCEPTION_PREFIXES = ("/api/admin/queue/", "/chat/api/reply/")


def is_gateway_admin_path(path: str) -> bool:
    """True if ``path`` is an admin-side endpoint the gateway answers itself (live queue state)."""
    return path in GATEWAY_EXCEPTIONS or path.startswith(GATEWAY_EXCEPTION_PREFIXES)


def is_admin_path(path: str) -> bool:
    """True if ``path`` belongs to the admin app."""
    if is_gateway_admin_path(path):
        return False
    return path in ADMIN_EXACT or path.startswith(ADMIN_PREFIXES)


def is_proxied_path(path: str) -> bool:
    """True if ``path`` is a gateway request served by a ``ProxiedRequest`` (it logs its own line)."""
    if is_admin_path(path) or is_gateway_admin_path(path):
        return False
    return path in ("/api", "/v1") or path.startswith(("/api/", "/v1/"))


class PathDispatch:
    """ASGI app routing HTTP requests by path; lifespan goes to the gateway."""

    def __init__(self, gateway: ASGIApp, admin: ASGIApp) -> None:
        self.gateway = gateway
        self.admin = admin

    async def begin_shutdown(self) -> None:
        """Shutdown starts: pass it on to the gateway (the admin app has nothing in flight to fail)."""
        await begin_shutdown_of(self.gateway)

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and is_admin_path(scope["path"]):
            await self.admin(scope, receive, send)
        else:
            await self.gateway(scope, receive, send)


async def begin_shutdown_of(app: Any) -> None:
    """Tell ``app`` that shutdown starts, if it wants to know (wrappers pass it on to what they wrap)."""
    begin = getattr(app, "begin_shutdown", None)
    if begin is not None:
        await begin()
