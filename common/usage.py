"""Reading the request log: usage per API key and per user, a filtered page, CSV export.

Framework-free: every function takes a sync SQLAlchemy ``Session`` (Flask-SQLAlchemy's
``db.session`` is one). Typical use in the admin app::

    usage = usage_by_key(db.session, since=utcnow() - timedelta(days=30))   # {key_id: Usage}
    page = request_page(db.session, filters=RequestFilters(source="custom_app"), page=2)
    rows = request_slice(db.session, filters=filters, limit=100, after=(time, row_id))  # keyset paging
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import InstrumentedAttribute, Session

from common.models import APIKey, RequestLog, User, WhitelistEntry, iso

MAX_PER_PAGE = 500
# Past any real page; keeps the SQL offset inside a 64-bit integer (a bigger one was a 500).
MAX_PAGE = 10**9

# One request-log row as scripts read it (docs/contract.md §6): the JSON fields and the CSV columns.
ROW_FIELDS = (
    "request_id",
    "time",
    "source",
    "who",
    "client_ip",
    "endpoint",
    "model",
    "status",
    "stage",
    "queue_wait_ms",
    "ttfb_ms",
    "duration_ms",
    "prompt_tokens",
    "completion_tokens",
    "error",
    "gpu_ms",  # docs/contract.md §13: slot time (null: never held one) and Ollama's load_duration
    "load_ms",
)
CSV_COLUMNS = ROW_FIELDS
MS_FIELDS = ("queue_wait_ms", "ttfb_ms", "duration_ms", "gpu_ms", "load_ms")

# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, slots=True)
class Usage:
    """What one key or user consumed since a point in time."""

    requests: int
    prompt_tokens: int
    completion_tokens: int
    average_wait_ms: float | None  # None when none of the requests was dispatched
    gpu_seconds: float = 0.0  # GPU time: the seconds its requests held a slot (docs/contract.md §13)


@dataclass(frozen=True, slots=True)
class RequestFilters:
    """Filters of the requests page; ``None`` means any."""

    source: str | None = None
    api_key_id: int | None = None
    user_id: int | None = None
    status: int | None = None
    status_class: int | None = None  # 4 for 4xx
    model: str | None = None
    endpoint: str | None = None
    client_ip: str | None = None
    request_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class RequestPage:
    """One page of request-log rows, newest first, and how many rows match in all."""

    rows: list[RequestLog]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        """How many pages the matching rows fill (at least 1)."""
        return max(1, math.ceil(self.total / self.per_page))


def _usage_by(session: Session, column: InstrumentedAttribute, since: datetime | None) -> dict[int, Usage]:
    query = (
        sa.select(
            column,
            sa.func.count(RequestLog.id),
            sa.func.coalesce(sa.func.sum(RequestLog.prompt_tokens), 0),
            sa.func.coalesce(sa.func.sum(RequestLog.completion_tokens), 0),
            sa.func.avg(RequestLog.queue_wait_ms),
            _GPU_MS,
        )
        .where(column.is_not(None))
        .group_by(column)
    )
    if since is not None:
        query = query.where(RequestLog.created_at >= since)
    return {owner: _usage(*numbers) for owner, *numbers in session.execute(query)}


_GPU_MS = sa.func.coalesce(sa.func.sum(RequestLog.gpu_ms), 0)


def _usage(requests: int, prompt: int, completion: int, wait: float | None, gpu_ms: float) -> Usage:
    wait_ms = None if wait is None else float(wait)
    return Usage(int(requests), int(prompt), int(completion), wait_ms, float(gpu_ms) / 1000)


def usage_by_key(session: Session, since: datetime | None = None) -> dict[int, Usage]:
    """Usage per API key id since ``since`` (all time when None); keys without requests are absent."""
    return _usage_by(session, RequestLog.api_key_id, since)


def usage_by_user(session: Session, since: datetime | None = None) -> dict[int, Usage]:
    """Usage per user id since ``since`` (all time when None); users without requests are absent."""
    return _usage_by(session, RequestLog.user_id, since)


def usage_by_entry(session: Session, since: datetime | None = None) -> dict[int, Usage]:
    """Usage per whitelist entry id since ``since`` (all time when None); idle entries are absent."""
    return _usage_by(session, RequestLog.whitelist_entry_id, since)


def usage_by_end_user(session: Session, since: datetime | None = None) -> dict[int, dict[str, Usage]]:
    """Usage per API key id and the end user behind it (README "End users behind a shared key")."""
    query = (
        sa.select(
            RequestLog.api_key_id,
            RequestLog.end_user,
            sa.func.count(RequestLog.id),
            sa.func.coalesce(sa.func.sum(RequestLog.prompt_tokens), 0),
            sa.func.coalesce(sa.func.sum(RequestLog.completion_tokens), 0),
            sa.func.avg(RequestLog.queue_wait_ms),
            _GPU_MS,
        )
        .where(RequestLog.api_key_id.is_not(None), RequestLog.end_user.is_not(None))
        .group_by(RequestLog.api_key_id, RequestLog.end_user)
    )
    if since is not None:
        query = query.where(RequestLog.created_at >= since)
    found: dict[int, dict[str, Usage]] = {}
    for key_id, person, *numbers in session.execute(query):
        found.setdefault(key_id, {})[person] = _usage(*numbers)
    return found


def _conditions(filters: RequestFilters) -> list[sa.ColumnElement[bool]]:
    conditions = []
    for name in ("source", "api_key_id", "user_id", "status", "model", "endpoint", "client_ip", "request_id"):
        value = getattr(filters, name)
        if value is not None:
            conditions.append(getattr(RequestLog, name) == value)
    if filters.status_class is not None:
        low = filters.status_class * 100
        conditions.append(RequestLog.status.between(low, low + 99))
    if filters.since is not None:
        conditions.append(RequestLog.created_at >= filters.since)
    if filters.until is not None:
        conditions.append(RequestLog.created_at < filters.until)
    return conditions


def request_page(
    session: Session, *, filters: RequestFilters | None = None, page: int = 1, per_page: int = 50
) -> RequestPage:
    """Matching rows, newest first; ``page`` kept within 1–MAX_PAGE, ``per_page`` within 1–500."""
    page = min(max(1, page), MAX_PAGE)
    per_page = min(max(1, per_page), MAX_PER_PAGE)
    conditions = _conditions(filters or RequestFilters())
    total = session.scalar(sa.select(sa.func.count(RequestLog.id)).where(*conditions)) or 0
    rows = session.scalars(
        sa.select(RequestLog)
        .where(*conditions)
        .order_by(RequestLog.created_at.desc(), RequestLog.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    return RequestPage(list(rows), total, page, per_page)


def request_slice(
    session: Session,
    *,
    filters: RequestFilters | None = None,
    limit: int = 100,
    after: tuple[datetime, int] | None = None,
) -> list[RequestLog]:
    """Up to ``limit`` matching rows, newest first, older than ``after`` = (time, id) of the last row seen.

    Keyset paging: a page stays right while new rows arrive, and costs the same at any depth.
    """
    conditions = _conditions(filters or RequestFilters())
    if after is not None:
        time, row_id = after
        conditions.append(
            sa.or_(
                RequestLog.created_at < time,
                sa.and_(RequestLog.created_at == time, RequestLog.id < row_id),
            )
        )
    query = (
        sa.select(RequestLog)
        .where(*conditions)
        .order_by(RequestLog.created_at.desc(), RequestLog.id.desc())
        .limit(max(1, limit))  # the caller bounds it (one more than a page, to know if there is more)
    )
    return list(session.scalars(query))


def iter_requests(
    session: Session, *, filters: RequestFilters | None = None, chunk: int = 1000
) -> Iterator[RequestLog]:
    """Every matching row, newest first, fetched ``chunk`` at a time (for exports of any size)."""
    query = (
        sa.select(RequestLog)
        .where(*_conditions(filters or RequestFilters()))
        .order_by(RequestLog.created_at.desc(), RequestLog.id.desc())
        .execution_options(yield_per=chunk)
    )
    yield from session.scalars(query)


def identities_of(session: Session, rows: list[RequestLog]) -> dict[tuple[str, int], object]:
    """The keys, users and whitelist entries named by ``rows``, by ``(kind, id)``, in three queries."""
    found: dict[tuple[str, int], object] = {}
    for kind, model, column in (
        ("key", APIKey, "api_key_id"),
        ("user", User, "user_id"),
        ("entry", WhitelistEntry, "whitelist_entry_id"),
    ):
        ids = {getattr(row, column) for row in rows} - {None}
        if ids:
            for item in session.scalars(sa.select(model).where(model.id.in_(ids))):
                found[(kind, item.id)] = item
    return found


def who_name(row: RequestLog, identities: dict[tuple[str, int], Any]) -> str | None:
    """Who sent ``row``: the key's name, the username, or the whitelist entry's label (else its address)."""
    key = identities.get(("key", row.api_key_id))
    if key is not None:
        return key.name if row.end_user is None else f"{key.name}/end-user:{row.end_user}"
    user = identities.get(("user", row.user_id))
    if user is not None:
        return user.username
    entry = identities.get(("entry", row.whitelist_entry_id))
    if entry is not None:
        return entry.label or entry.ip
    return None


def row_fields(row: RequestLog, who: str | None) -> dict[str, Any]:
    """One row as :data:`ROW_FIELDS` (docs/contract.md §6), ``time`` in ISO 8601 UTC."""
    fields = {name: getattr(row, name) for name in ROW_FIELDS if name not in ("time", "who")}
    return fields | {"time": iso(row.created_at), "who": who}


def named_rows(session: Session, rows: list[RequestLog]) -> list[dict[str, Any]]:
    """:func:`row_fields` of each row, with who sent it looked up in three queries for all of them."""
    identities = identities_of(session, rows)
    return [row_fields(row, who_name(row, identities)) for row in rows]


def safe_cell(value: object) -> str:
    """A CSV cell that a spreadsheet shows as text, never runs as a formula."""
    if value is None:
        return ""
    text = iso(value) if isinstance(value, datetime) else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def csv_rows(rows: Iterable[dict]) -> Iterator[list[str]]:
    """The header, then one list of safe cells per row of :data:`ROW_FIELDS` (milliseconds rounded)."""
    yield list(CSV_COLUMNS)
    for row in rows:
        yield [
            safe_cell(round(row[column]) if column in MS_FIELDS and row[column] is not None else row[column])
            for column in CSV_COLUMNS
        ]
