"""What the limits need from the database at start-up: when limits were set, and the day's tokens.

docs/contract.md §7: limits count requests from the moment they are set, and ``daily_tokens``
counts a rolling 24 h, so a gateway that starts reads back both for the last day: the audit log
says when an ``rpm`` or ``daily_tokens`` last changed, the request log what each request spent.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from common.models import AuditEntry, RequestLog
from common.policies import DAILY_GPU_SECONDS, DAILY_TOKENS, RPM
from common.sources import subjects_of
from proxy_app.limits import Spend

# Audit targets (admin_app/services/*.target) as the gateway names identities (common.sources.who_of).
_TARGET_KINDS = {"apikey": "key", "whitelist": "ip", "user": "user"}
# GPU time is counted like tokens, in milliseconds, under this prefix of the identity (policy_gate).
GPU = "gpu-ms:"


def _moment(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


async def limit_changes(engine: AsyncEngine, after: float) -> dict[tuple[str, str], float]:
    """``(who, "rpm" | "daily_tokens")`` → when it last changed, for changes after ``after`` (epoch s)."""
    changed: dict[tuple[str, str], float] = {}
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(AuditEntry.at, AuditEntry.target, AuditEntry.changes)
            .where(AuditEntry.at > _moment(after), AuditEntry.target.is_not(None))
            .order_by(AuditEntry.at)
        )
        for at, target, changes in rows:
            kind, _, ident = (target or "").partition(":")
            if kind not in _TARGET_KINDS or not isinstance(changes, dict):
                continue
            for field in (RPM, DAILY_TOKENS, DAILY_GPU_SECONDS):
                if field in changes:
                    changed[(f"{_TARGET_KINDS[kind]}:{ident}", field)] = at.timestamp()
    return changed


async def _spends(
    engine: AsyncEngine,
    after: float,
    whos: set[str],
    amounts: tuple[sa.ColumnElement, ...],
    present: sa.ColumnElement[bool],
    amount: Callable[[sa.Row], int],
    prefix: str = "",
) -> list[Spend]:
    """``amount(row)`` of every request of ``whos`` admitted after ``after`` (epoch s) where
    ``present`` holds, oldest first, under ``prefix + who`` for each subject it counts against."""
    if not whos:
        return []
    log = RequestLog
    query = (
        sa.select(
            log.request_id, log.created_at, log.api_key_id, log.whitelist_entry_id, log.user_id, *amounts
        )
        .where(log.created_at > _moment(after), present)
        .order_by(log.created_at)
    )
    spends = []
    async with engine.connect() as conn:
        for row in await conn.execute(query):
            spent = amount(row)
            if spent <= 0:
                continue
            at = row.created_at.timestamp()
            # A personal key's request counts for its owner and for the key (docs/contract.md §14).
            for who in subjects_of(row.api_key_id, row.whitelist_entry_id, row.user_id):
                if who in whos:
                    spends.append(Spend(prefix + who, row.request_id, at, spent))
    return spends


async def recent_spends(engine: AsyncEngine, after: float, whos: set[str]) -> list[Spend]:
    """The tokens of the requests of ``whos`` admitted after ``after`` (epoch s), oldest first."""
    log = RequestLog
    return await _spends(
        engine,
        after,
        whos,
        (log.prompt_tokens, log.completion_tokens),
        sa.or_(log.prompt_tokens.is_not(None), log.completion_tokens.is_not(None)),
        lambda row: (row.prompt_tokens or 0) + (row.completion_tokens or 0),
    )


async def recent_gpu_spends(engine: AsyncEngine, after: float, whos: set[str]) -> list[Spend]:
    """The GPU time (ms, under ``gpu-ms:<who>``) of the requests of ``whos`` admitted after ``after``."""
    log = RequestLog
    return await _spends(
        engine, after, whos, (log.gpu_ms,), log.gpu_ms > 0, lambda row: math.ceil(row.gpu_ms), GPU
    )
