"""Liveness (``/health``) and the live numbers for admins (``/api/admin/stats``)."""

from __future__ import annotations

from quart import Blueprint, request

from proxy_app.classify import logged_in_user, principal_of
from proxy_app.errors import Forbidden, ProxyError
from proxy_app.gateway import gateway
from proxy_app.upstream import redact_url

bp = Blueprint("monitor", __name__)


@bp.get("/health")
async def health() -> dict:
    """200 while the process lives: ``ok`` when every backend is up, else ``degraded``."""
    gw = gateway()
    assert gw.pool is not None
    backends = [
        {
            "url": redact_url(backend.url),
            "healthy": backend.healthy,
            "slots": backend.slots,
            "in_use": backend.in_use,
            "models": None if backend.models is None else sorted(backend.models),
        }
        for backend in gw.pool.backends
    ]
    snapshot = gw.stats_snapshot()
    return {
        "status": "ok" if all(b["healthy"] for b in backends) else "degraded",
        "backends": backends,
        "queue_length": snapshot["queue_length"],
        "active_requests": snapshot["active_requests"],
    }


@bp.get("/api/admin/stats")
async def admin_stats() -> dict:
    """Queue, slots, rates and waits, live; for an admin's session cookie or access token."""
    gw = gateway()
    principal = principal_of(request, gw.settings)
    await gw.cache.learn(principal.credentials)
    user = logged_in_user(principal, gw.cache.snapshot)
    if user is None:
        raise ProxyError(401, "admin login required (session cookie or Bearer access token)")
    if not user.is_admin:
        raise Forbidden("admins only")
    snapshot = gw.stats_snapshot()
    payload = gw.live.payload(snapshot)
    payload["backends"] = [{**backend, "url": redact_url(backend["url"])} for backend in payload["backends"]]
    payload["queue_by_source"] = snapshot.get("queue_by_source", {})
    payload["active_by_source"] = snapshot.get("active_by_source", {})
    payload["oldest_wait"] = round(snapshot.get("oldest_wait", 0.0), 3)
    return payload
