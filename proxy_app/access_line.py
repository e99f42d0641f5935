"""A proxied request's access-log line, from the record of its request-log row (common/access_log.py)."""

from __future__ import annotations

from common.access_log import AccessLog
from common.sources import Identity, RequestSource
from proxy_app.request_log import RequestRecord

_WHO_KIND = {RequestSource.CUSTOM_APP: "key", RequestSource.DIRECT_API: "ip", RequestSource.WEB_CHAT: "user"}


def who(identity: Identity | None, key_prefix: str | None) -> str | None:
    """``key:<name>`` (``key:<name>/end-user:<value>`` for a person behind it), ``ip:<address>``,
    ``user:<name>``; a refused key as ``refused-key:<prefix>`` (the access log quotes odd text)."""
    if identity is not None:
        person = f"/end-user:{identity.end_user}" if identity.end_user is not None else ""
        return f"{_WHO_KIND[identity.source]}:{identity.label}{person}"
    if key_prefix is not None:
        return f"refused-key:{key_prefix}"
    return None


def write_access_line(log: AccessLog, rec: RequestRecord, identity: Identity | None) -> None:
    """One line for a finished proxied request (nothing, and nothing built, when the log is off)."""
    if not log.enabled:
        return
    log.write(
        time=rec.created_at,
        request_id=rec.request_id,
        client_ip=rec.client_ip,
        source=rec.source,
        who=who(identity, rec.key_prefix),
        method=rec.method,
        path=rec.endpoint,
        status=rec.status,
        wait_ms=rec.queue_wait_ms,
        duration_ms=rec.duration_ms,
    )
