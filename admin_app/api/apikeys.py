"""``/api/admin/apikeys``: list, create, edit, revoke (docs/contract.md §3, §7)."""

from __future__ import annotations

from flask import g

from admin_app.api.base import APIError, body, bp
from admin_app.services import apikeys as service
from common.models import APIKey, iso
from common.policies import EXPIRES_AT, POLICY_FIELDS


def policy_json(key: APIKey) -> dict:
    """A key's policy fields (§7) and ``end_user_header``, as JSON values."""
    fields = {field: getattr(key, field) for field in POLICY_FIELDS}
    fields[EXPIRES_AT] = iso(key.expires_at)
    return fields | {"end_user_header": key.end_user_header}


def apikey_json(key: APIKey) -> dict:
    """docs/contract.md §3 shape of an API key (never the key), its policy fields at the top level."""
    shape = {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "priority": key.priority,
        "created_at": iso(key.created_at),
        "last_used": iso(key.last_used),
        "is_active": key.is_active,
        # A personal key's user (docs/contract.md §14); null for a key the admin made.
        "owner": key.owner.username if key.owner is not None else None,
    }
    return shape | policy_json(key)


@bp.get("/apikeys")
def apikeys_list():
    """Every API key (never the key itself), newest first."""
    return [apikey_json(key) for key in service.list_api_keys()]


@bp.post("/apikeys")
def apikeys_create():
    """Create ``{"name", "priority", <policy>?, "end_user_header"?}`` → 201 with the key, shown once."""
    data = body()
    for field in ("name", "priority"):
        if data.get(field) is None:
            raise APIError(400, f"{field} is required")
    policy = {field: value for field, value in data.items() if field not in ("name", "priority")}
    key, secret = service.create_api_key(data["name"], data["priority"], g.api_user, policy)
    created = {
        "id": key.id,
        "key": secret,
        "name": key.name,
        "priority": key.priority,
        "prefix": key.prefix,
        "created_at": iso(key.created_at),
    }
    return created, 201


@bp.patch("/apikeys/<int:key_id>")
def apikeys_update(key_id: int):
    """Change ``name``, ``priority``, ``end_user_header`` and policy fields (``null`` clears) → 200 + key."""
    return apikey_json(service.update_api_key(key_id, body(), g.api_user))


@bp.delete("/apikeys/<int:key_id>")
def apikeys_revoke(key_id: int):
    """Revoke a key → 200 (also when already revoked); 404 if unknown."""
    return apikey_json(service.revoke_api_key(key_id, g.api_user))
