"""Liveness (``/health``), readiness (``/ready``), live numbers (``/api/admin/stats``, ``/metrics``)."""

from __future__ import annotations

import asyncio
import logging

import sqlalchemy as sa
from quart import Blueprint, Response, request
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from common.security import constant_time_equals
from common.sources import UserInfo
from proxy_app.classify import logged_in_user, principal_of
from proxy_app.errors import Forbidden, ProxyError
from proxy_app.gateway import Gateway, gateway
from proxy_app.upstream import redact_url

bp = Blueprint("monitor", __name__)
log = logging.getLogger("seadragon.gateway")


@bp.get("/health")
async def health() -> dict:
    """200 while the process lives: ``ok`` when every backend is up, else ``degraded``.

    Anyone may ask whether it is up; backend URLs, slots and models are for an
    admin (session or Bearer) only (docs/contract.md §16): they map the network
    behind the gateway.
    """
    gw = gateway()
    status = "ok" if all(backend.healthy for backend in gw.pool.backends) else "degraded"
    user = await _signed_in(gw)
    if user is None or not user.is_admin:
        return {"status": status}
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
        "status": status,
        "backends": backends,
        "queue_length": snapshot["queue_length"],
        "active_requests": snapshot["active_requests"],
    }


@bp.get("/ready")
async def ready() -> tuple[dict, int]:
    """200 when the database answers and a backend is healthy, else 503 with the reason (§15).

    With ``REDIS_URL`` set, Redis must answer too (the shared queue lives there). For orchestrators
    (the image's HEALTHCHECK, a load balancer): it turns 503 the moment shutdown begins, so traffic
    moves elsewhere while active streams finish. Anyone may ask; it names no backend and no database.
    """
    reason = await _not_ready_reason(gateway())
    if reason is not None:
        return {"ready": False, "reason": reason}, 503
    return {"ready": True}, 200


async def _not_ready_reason(gw: Gateway) -> str | None:
    if gw.draining:
        return "the gateway is shutting down"
    if not any(backend.healthy and backend.answered for backend in gw.pool.backends):
        return "no healthy backend"
    try:
        # Bounded like a backend's health check: a database that hangs is a database that does not answer.
        async with asyncio.timeout(gw.settings.health_timeout), gw.engine.connect() as connection:
            await connection.execute(sa.text("SELECT 1"))
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        log.warning("readiness: the database does not answer: %s", type(exc).__name__)
        return "the database does not answer"
    if gw.redis is not None:
        # Scale-out: the queue and the slots live in Redis; without it nothing can be served.
        try:
            async with asyncio.timeout(gw.settings.health_timeout):
                await gw.redis.ping()
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("readiness: redis does not answer: %s", type(exc).__name__)
            return "redis does not answer"
    return None


async def _signed_in(gw: Gateway) -> UserInfo | None:
    """The user behind the request's session cookie or Bearer access token, if any."""
    principal = principal_of(request, gw.settings)
    await gw.cache.learn(principal.credentials)
    return logged_in_user(principal, gw.cache.snapshot)


async def require_admin(gw: Gateway) -> UserInfo:
    """The admin behind the session cookie or Bearer access token; 401 without one, 403 for others."""
    user = await _signed_in(gw)
    if user is None:
        raise ProxyError(401, "admin login required (session cookie or Bearer access token)")
    if not user.is_admin:
        raise Forbidden("admins only")
    return user


@bp.get("/metrics")
async def metrics() -> Response:
    """Prometheus text for admins, or for ``Authorization: Bearer <METRICS_TOKEN>``."""
    gw = gateway()
    if not _has_scrape_token(gw.settings.metrics_token):
        await require_admin(gw)
    body, content_type = gw.metrics.render()
    return Response(body, content_type=content_type)


def _has_scrape_token(expected: str | None) -> bool:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return bool(expected) and scheme.lower() == "bearer" and constant_time_equals(value.strip(), expected)


@bp.get("/api/admin/stats")
async def admin_stats() -> dict:
    """Queue, slots, rates and waits, live; for an admin's session cookie or access token."""
    gw = gateway()
    await require_admin(gw)
    snapshot = gw.stats_snapshot()
    payload = gw.live.payload(snapshot)
    payload["backends"] = [{**backend, "url": redact_url(backend["url"])} for backend in payload["backends"]]
    payload["queue_by_source"] = snapshot.get("queue_by_source", {})
    payload["active_by_source"] = snapshot.get("active_by_source", {})
    payload["oldest_wait"] = round(snapshot.get("oldest_wait", 0.0), 3)
    return payload
