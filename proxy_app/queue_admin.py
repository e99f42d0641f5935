"""What waits, and for how long (docs/contract.md §8): the live queue for admins, and cancel.

Served by the gateway, not the admin app: the queue lives in the gateway's process (or in
Redis, which every instance reads). ``request_id`` is the ``X-Request-ID`` its client got.
"""

from __future__ import annotations

from quart import Blueprint, Response, jsonify, request

from common.db import make_async_sessionmaker
from common.models import AuditEntry, utcnow
from common.sessions import (
    SESSION_COOKIE_NAME,
    SESSION_LIFETIME_SECONDS,
    csrf_token_valid,
    read_session_cookie,
)
from proxy_app.classify import principal_of
from proxy_app.errors import ProxyError
from proxy_app.gateway import Gateway, gateway
from proxy_app.identity_snapshot import Snapshot
from proxy_app.monitor import require_admin
from proxy_app.scheduler import ADMIN_CANCEL
from proxy_app.upstream import redact_url

bp = Blueprint("queue_admin", __name__)

REQUEST_ID_MAX = 64  # the request log's request_id width: a longer id was never issued


@bp.get("/api/admin/queue")
async def queue() -> Response:
    """Waiting requests in dispatch order, then active ones; for an admin's session or access token."""
    gw = gateway()
    await require_admin(gw)
    rows = await gw.scheduler.queue_view()
    names = display_names(gw.cache.snapshot)
    for row in rows:
        if row["backend"] is not None:
            row["backend"] = redact_url(row["backend"])
        # ``who`` is the scheduler's identity key (``key:3``); ``name`` what the panel shows for it.
        holder, _, end_user = (row["who"] or "").partition("/")
        name = names.get(holder, holder)
        row["name"] = f"{name} / {end_user.removeprefix('end-user:')}" if end_user else name
    return jsonify(rows)


def display_names(snapshot: Snapshot) -> dict[str, str]:
    """``key:3`` → ``key 'ci-bot'``, ``ip:7`` → ``10.0.0.0/24``, ``user:12`` → ``alice``."""
    names = {f"key:{key.id}": f"key '{key.name}'" for key in snapshot.keys.values()}
    names.update({f"ip:{rule.id}": str(rule.network) for rule in snapshot.whitelist})
    names.update({f"user:{user.id}": user.username for user in snapshot.users.values()})
    return names


@bp.delete("/api/admin/queue/<request_id>")
async def cancel(request_id: str) -> dict:
    """Cancel a waiting (503 to its client) or active (in-band error) request; 404 if unknown."""
    gw = gateway()
    admin = await require_admin(gw)
    _check_csrf(gw)
    if len(request_id) > REQUEST_ID_MAX:
        raise ProxyError(404, "no waiting or active request with this id")
    if not await gw.scheduler.cancel_request(request_id, ADMIN_CANCEL):
        raise ProxyError(404, "no waiting or active request with this id")
    await _audit_cancel(gw, admin.username, request_id)
    return {"request_id": request_id, "cancelled": True}


async def _audit_cancel(gw: Gateway, actor: str, request_id: str) -> None:
    """Every admin action is audited (docs/contract.md §16), this one by the gateway that did it."""
    async with make_async_sessionmaker(gw.engine)() as session, session.begin():
        session.add(
            AuditEntry(
                at=utcnow(),
                actor=actor,
                action="queue.cancel",
                target=f"request:{request_id}",
                changes={},  # the target names it; nothing of the request itself (a prompt) is kept
            )
        )


def _check_csrf(gw: Gateway) -> None:
    """A session cookie comes with any request a browser makes: it needs the page's CSRF token too."""
    if principal_of(request, gw.settings).credentials.user_token is not None:
        return  # a Bearer access token: no browser adds one on its own
    session = read_session_cookie(request.cookies.get(SESSION_COOKIE_NAME), gw.settings.secret_key)
    token = request.headers.get("X-CSRFToken")
    if not csrf_token_valid(token, session, gw.settings.secret_key, SESSION_LIFETIME_SECONDS):
        raise ProxyError(400, "CSRF check failed: send the page's token in the X-CSRFToken header")
