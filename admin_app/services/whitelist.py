"""Whitelist service: addresses and networks admitted without a key, each with a priority and policy."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from admin_app.extensions import db
from admin_app.services import (
    PRIORITY_MAX,
    PRIORITY_MIN,
    Conflict,
    NotFound,
    ServiceError,
    check_int,
    check_text,
    get_by_id,
    newest_first,
)
from admin_app.services import policies as policy_patch
from admin_app.services.audit import record
from common.models import MAX_ID, User, WhitelistEntry, utcnow
from common.network import IPNetwork, network_text, normalise_network
from common.policies import LIMIT_FIELDS

ALLOW_EVERYONE = "allow_everyone"
PATCH_CHECKS = {
    "label": lambda value: check_text(value, "label", required=False),
    "priority": lambda value: check_int(value, "priority", PRIORITY_MIN, PRIORITY_MAX),
}


def covers_everyone(network: IPNetwork) -> bool:
    """Whether a network admits every address of its family (``0.0.0.0/0``, ``::/0``).

    IPv4-mapped spellings (``::ffff:0:0/96``) are normalised to ``0.0.0.0/0`` first, and
    clients' mapped addresses are matched as IPv4, so these two are the only such networks.
    """
    return network.prefixlen == 0


def target(entry: WhitelistEntry) -> str:
    """The audit target naming an entry."""
    return f"whitelist:{entry.id}"


def list_whitelist() -> list[WhitelistEntry]:
    """Every whitelist entry, newest first."""
    return newest_first(WhitelistEntry, WhitelistEntry.added_at)


def add_whitelist_entry(
    ip: object, label: object, priority: object, actor: User | None, *, allow_everyone: object = False
) -> WhitelistEntry:
    """Admit an IP or CIDR (host bits cleared); one covering every address needs ``allow_everyone``."""
    if not isinstance(ip, str):
        raise ServiceError("ip must be a string holding an IP address or CIDR", "ip")
    try:
        network = normalise_network(ip)
    except ValueError as exc:
        raise ServiceError(f"ip: {exc}", "ip") from None
    if not isinstance(allow_everyone, bool):
        raise ServiceError(f"{ALLOW_EVERYONE} must be true or false", ALLOW_EVERYONE)
    text = network_text(network)
    if covers_everyone(network) and not allow_everyone:
        raise ServiceError(
            f"{ALLOW_EVERYONE}: {text} admits every address; set {ALLOW_EVERYONE} to true if you mean it",
            ALLOW_EVERYONE,
        )
    label_text = check_text(label, "label", required=False)
    priority_value = check_int(priority, "priority", PRIORITY_MIN, PRIORITY_MAX)
    if db.session.scalar(sa.select(WhitelistEntry.id).where(WhitelistEntry.ip == text)) is not None:
        raise Conflict(f"ip: {text} is already on the whitelist", "ip")
    entry = WhitelistEntry(ip=text, label=label_text, priority=priority_value, added_at=utcnow())
    db.session.add(entry)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(f"ip: {text} is already on the whitelist", "ip") from None
    record(
        actor, "whitelist.add", target(entry), {"ip": text, "label": label_text, "priority": priority_value}
    )
    db.session.commit()
    return entry


def find_whitelist_entry(ident: str) -> WhitelistEntry | None:
    """The entry with this id (all digits) or this IP/CIDR (in any spelling)."""
    ident = ident.strip()
    if ident.isascii() and ident.isdigit():
        if int(ident) > MAX_ID:
            raise ServiceError(f"whitelist entry id {ident[:40]} is out of range (ids are below 2^63)", "id")
        return get_by_id(WhitelistEntry, int(ident))
    try:
        text = network_text(normalise_network(ident))
    except ValueError:
        return None
    return db.session.scalar(sa.select(WhitelistEntry).where(WhitelistEntry.ip == text))


def get_whitelist_entry(ident: str) -> WhitelistEntry:
    """The entry named by id or IP/CIDR; :class:`NotFound` when absent."""
    entry = find_whitelist_entry(ident)
    if entry is None:
        raise NotFound(f"no whitelist entry {ident!r}")
    return entry


def update_whitelist_entry(ident: str, patch: object, actor: User | None) -> WhitelistEntry:
    """Change ``label``, ``priority`` and policy fields (``None`` clears one); audited if anything changed."""
    entry = get_whitelist_entry(ident)
    values = policy_patch.check_patch(patch, PATCH_CHECKS, LIMIT_FIELDS)
    policy_patch.apply(entry, values, actor, "whitelist.update", target(entry))
    db.session.commit()
    return entry


def remove_whitelist_entry(ident: str, actor: User | None) -> WhitelistEntry:
    """Remove the entry named by id or IP/CIDR; :class:`NotFound` when absent."""
    entry = get_whitelist_entry(ident)
    record(actor, "whitelist.remove", target(entry), {"ip": entry.ip, "label": entry.label})
    db.session.delete(entry)
    db.session.commit()
    return entry
