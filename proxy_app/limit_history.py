"""What the limits need from the database at start-up: when limits were set, and the day's tokens.

docs/contract.md §7: limits count requests from the moment they are set, and ``daily_tokens``
counts a rolling 24 h, so a gateway that starts reads back both for the last day: the audit log
says when an ``rpm`` or ``daily_tokens`` last changed, the request log what each request spent.
"""

from __future__ import annotations

import math
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


async def recent_spends(engine: AsyncEngine, after: float, whos: set[str]) -> list[Spend]:
    """The tokens of the requests of ``whos`` admitted after ``after`` (epoch s), oldest first."""
    if not whos:
        return []
    log = RequestLog
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(
                log.request_id,
                log.created_at,
                log.api_key_id,
                log.whitelist_entry_id,
                log.user_id,
                log.prompt_tokens,
                log.completion_tokens,
            )
            .where(
                log.created_at > _moment(after),
                sa.or_(log.prompt_tokens.is_not(None), log.completion_tokens.is_not(None)),
            )
            .order_by(log.created_at)
        )
        spends = []
        for row in rows:
            tokens = (row.prompt_tokens or 0) + (row.completion_tokens or 0)
            # A personal key's request counts for its owner and for the key (docs/contract.md §14).
            for who in subjects_of(row.api_key_id, row.whitelist_entry_id, row.user_id):
                if who in whos and tokens > 0:
                    spends.append(Spend(who, row.request_id, row.created_at.timestamp(), tokens))
    return spends


async def recent_gpu_spends(engine: AsyncEngine, after: float, whos: set[str]) -> list[Spend]:
    """The GPU time (ms, under ``gpu-ms:<who>``) of the requests of ``whos`` admitted after ``after``."""
    if not whos:
        return []
    log = RequestLog
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(
                log.request_id,
                log.created_at,
                log.api_key_id,
                log.whitelist_entry_id,
                log.user_id,
                log.gpu_ms,
            )
            .where(log.created_at > _moment(after), log.gpu_ms > 0)
            .order_by(log.created_at)
        )
        spends = []
        for row in rows:
            at, ms = row.created_at.timestamp(), math.ceil(row.gpu_ms)
            # A personal key's GPU time counts for its owner and for the key (docs/contract.md §14).
            for who in subjects_of(row.api_key_id, row.whitelist_entry_id, row.user_id):
                if who in whos:
                    spends.append(Spend(GPU + who, row.request_id, at, ms))
    return spends
