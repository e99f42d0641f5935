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


class PatchErrors(ServiceError):
    """Every bad field of a PATCH at once (``errors``: field -> message); the message is the first's."""

    def __init__(self, errors: dict[str, str]) -> None:
        field, message = next(iter(errors.items()))
        super().__init__(message, field)
        self.errors = errors


def check_patch(patch: object, checks: Checks, policy_fields: tuple[str, ...]) -> dict[str, Any]:
    """The clean values of a PATCH body; bad values or unknown fields raise :class:`PatchErrors`."""
    if not isinstance(patch, Mapping):
        raise ServiceError("the request body must be a JSON object")
    clean: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for field, value in patch.items():
        try:
            if field in checks:
                clean[field] = checks[field](value)
            else:
                clean.update(validate_policy_patch({field: value}, policy_fields))
        except (PolicyError, ServiceError) as exc:
            if exc.field not in (*checks, *policy_fields):
                known = ", ".join((*checks, *policy_fields))
                errors[field] = f"{field}: unknown field (expected one of {known})"
            else:
                errors[exc.field or field] = exc.message
    if errors:
        raise PatchErrors(errors)
    return clean


def apply(row: object, values: Mapping[str, Any], actor: User | None, action: str, target: str) -> None:
    """Set ``values`` on ``row`` and, if anything changed, add the audit row ``{field: [old, new]}``."""
    changed = diff(row, dict(values))
    for field, value in values.items():
        setattr(row, field, value)
    if changed:
        record(actor, action, target, changed)
