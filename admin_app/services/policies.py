"""Applying a policy patch (docs/contract.md §7) to a key, whitelist entry or user, with its audit diff."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from admin_app.services import ServiceError
from admin_app.services.audit import diff, record
from common.models import User
from common.policies import PolicyError, validate_policy_patch

# Checks of the non-policy fields a PATCH may carry: field -> function(value) -> clean value.
Checks = Mapping[str, Callable[[object], Any]]


def check_patch(patch: object, checks: Checks, policy_fields: tuple[str, ...]) -> dict[str, Any]:
    """The clean values of a PATCH body; a bad value or unknown field is a ServiceError naming it."""
    if not isinstance(patch, Mapping):
        raise ServiceError("the request body must be a JSON object")
    own = {field: value for field, value in patch.items() if field in checks}
    rest = {field: value for field, value in patch.items() if field not in checks}
    try:
        clean = validate_policy_patch(rest, policy_fields)
    except PolicyError as exc:
        if exc.field not in policy_fields:
            known = ", ".join((*checks, *policy_fields))
            raise ServiceError(f"{exc.field}: unknown field (expected one of {known})", exc.field) from None
        raise ServiceError(exc.message, exc.field) from None
    for field, value in own.items():
        try:
            clean[field] = checks[field](value)
        except PolicyError as exc:
            raise ServiceError(exc.message, exc.field) from None
    return clean


def apply(row: object, values: Mapping[str, Any], actor: User | None, action: str, target: str) -> None:
    """Set ``values`` on ``row`` and, if anything changed, add the audit row ``{field: [old, new]}``."""
    changed = diff(row, dict(values))
    for field, value in values.items():
        setattr(row, field, value)
    if changed:
        record(actor, action, target, changed)
