"""``/api/admin/whitelist``: list, add, edit, remove (docs/contract.md §3, §7, §10)."""

from __future__ import annotations

from flask import current_app, g, request

from admin_app.api.base import APIError, body, bp, query_int
from admin_app.services import whitelist as service
from common.models import WhitelistEntry, iso
from common.policies import LIMIT_FIELDS


def whitelist_json(entry: WhitelistEntry) -> dict:
    """docs/contract.md §3 shape of a whitelist entry, its policy fields (§7) at the top level."""
    shape = {
        "id": entry.id,
        "ip": entry.ip,
        "label": entry.label,
        "priority": entry.priority,
        "added_at": iso(entry.added_at),
    }
    return shape | {field: getattr(entry, field) for field in LIMIT_FIELDS}


@bp.get("/whitelist")
def whitelist_list():
    """Every whitelist entry, newest first."""
    return [whitelist_json(entry) for entry in service.list_whitelist()]


@bp.post("/whitelist")
def whitelist_add():
    """Add ``{"ip", "label"?, "priority"?, "allow_everyone"?}`` (or as a query string) → 201 + entry."""
    data = body()
    if not data and request.args.get("ip") is not None:
        data = {
            "ip": request.args.get("ip"),
            "label": request.args.get("label"),
            "priority": query_int(request.args.get("priority")),
            service.ALLOW_EVERYONE: request.args.get(service.ALLOW_EVERYONE, "").lower() == "true",
        }
    data = {key: value for key, value in data.items() if value is not None}
    if "ip" not in data:
        raise APIError(400, "ip is required (an IP address or CIDR)")
    priority = data.get("priority", current_app.config["SEADRAGON"].direct_priority)
    allow_everyone = data.get(service.ALLOW_EVERYONE, False)
    entry = service.add_whitelist_entry(
        data["ip"], data.get("label"), priority, g.api_user, allow_everyone=allow_everyone
    )
    return whitelist_json(entry), 201


@bp.patch("/whitelist/<path:ident>")
def whitelist_update(ident: str):
    """Change ``label``, ``priority`` and policy fields (``null`` clears) → 200 + entry; 404 if absent."""
    return whitelist_json(service.update_whitelist_entry(ident, body(), g.api_user))


@bp.delete("/whitelist/<path:ident>")
def whitelist_remove(ident: str):
    """Remove by id or by IP/CIDR (``/`` written ``%2F``) → 200 + the removed entry."""
    return whitelist_json(service.remove_whitelist_entry(ident, g.api_user))
