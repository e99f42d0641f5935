"""API-key service: keys for applications, each with a priority, a policy and an end-user header."""

from __future__ import annotations

from admin_app.extensions import db
from admin_app.services import (
    PRIORITY_MAX,
    PRIORITY_MIN,
    ServiceError,
    check_int,
    check_text,
    get_or_not_found,
    newest_first,
)
from admin_app.services import policies as policy_patch
from admin_app.services.audit import record
from common.models import APIKey, User, utcnow
from common.policies import POLICY_FIELDS, validate_header_name
from common.security import display_prefix, hash_secret, new_api_key

PATCH_CHECKS = {
    "name": lambda value: check_text(value, "name", required=True),
    "priority": lambda value: check_int(value, "priority", PRIORITY_MIN, PRIORITY_MAX),
    "end_user_header": validate_header_name,
}


def target(key: APIKey) -> str:
    """The audit target naming a key."""
    return f"apikey:{key.id}"


CREATE_CHECKS = {"end_user_header": validate_header_name}


def create_api_key(
    name: object, priority: object, actor: User | None, policy: object = None
) -> tuple[APIKey, str]:
    """A new API key, with its policy and end-user header in the same step (docs/contract.md §7).

    Returns the row and the key itself (shown once, stored hashed, never audited). Every bad field
    is named at once (:class:`~admin_app.services.policies.PatchErrors`).
    """
    errors: dict[str, str] = {}
    checked = {}
    for field, check in (
        ("name", lambda: check_text(name, "name", required=True)),
        ("priority", lambda: check_int(priority, "priority", PRIORITY_MIN, PRIORITY_MAX)),
    ):
        try:
            checked[field] = check()
        except ServiceError as exc:
            errors[field] = exc.message
    values = {}
    try:
        values = policy_patch.check_patch(policy or {}, CREATE_CHECKS, POLICY_FIELDS)
    except policy_patch.PatchErrors as exc:
        errors.update(exc.errors)
    if errors:
        raise policy_patch.PatchErrors(errors)
    name_text, priority_value = checked["name"], checked["priority"]
    secret = new_api_key()
    key = APIKey(
        name=name_text,
        key_hash=hash_secret(secret),
        prefix=display_prefix(secret),
        priority=priority_value,
        created_at=utcnow(),
        created_by_id=actor.id if actor else None,
        **values,
    )
    db.session.add(key)
    db.session.flush()
    set_values = {field: value for field, value in values.items() if value is not None}
    record(
        actor,
        "apikey.create",
        target(key),
        {"name": name_text, "priority": priority_value, "prefix": key.prefix, **set_values},
    )
    db.session.commit()
    return key, secret


def list_api_keys() -> list[APIKey]:
    """Every API key, newest first."""
    return newest_first(APIKey, APIKey.created_at)


def update_api_key(key_id: int, patch: object, actor: User | None) -> APIKey:
    """Change ``name``, ``priority``, ``end_user_header`` and policy fields (``None`` clears); audited."""
    key = get_or_not_found(APIKey, key_id, "API key")
    values = policy_patch.check_patch(patch, PATCH_CHECKS, POLICY_FIELDS)
    policy_patch.apply(key, values, actor, "apikey.update", target(key))
    db.session.commit()
    return key


def revoke_api_key(key_id: int, actor: User | None) -> APIKey:
    """Revoke a key (idempotent); :class:`NotFound` if unknown."""
    key = get_or_not_found(APIKey, key_id, "API key")
    if key.is_active:
        key.is_active = False
        key.revoked_at = utcnow()
        record(actor, "apikey.revoke", target(key), {"is_active": [True, False]})
        db.session.commit()
    return key
