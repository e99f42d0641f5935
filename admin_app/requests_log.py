"""The requests page: the request log, filtered and paged, its CSV export, and usage per key and user."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import timedelta
from itertools import islice
from urllib.parse import urlencode

import sqlalchemy as sa
from flask import Response, render_template, request, stream_with_context, url_for
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.fields.choices import SelectChoice

from admin_app.extensions import db
from admin_app.forms import apply_error
from admin_app.identity import accepts_bearer, admin_blueprint
from admin_app.services import ServiceError
from admin_app.services.request_log import FILTER_NAMES, TEXT_MAX, parse_filters
from common.models import APIKey, RequestLog, User, utcnow
from common.sources import RequestSource
from common.usage import (
    RequestFilters,
    Usage,
    csv_rows,
    identities_of,
    iter_requests,
    named_rows,
    request_page,
    usage_by_entry,
    usage_by_key,
    usage_by_user,
)

bp = admin_blueprint("requests", __name__, "/admin")

PER_PAGE = 50
SOURCE_LABELS = {
    RequestSource.DIRECT_API.value: "Direct API",
    RequestSource.CUSTOM_APP.value: "Custom app",
    RequestSource.WEB_CHAT.value: "Web chat",
}
USAGE_WINDOWS = {"day": timedelta(hours=24), "week": timedelta(days=7)}


class RequestFilterForm(FlaskForm):
    """The filters above the request log (a GET form: no CSRF); ``parse_filters`` holds the rules."""

    class Meta:
        csrf = False

    source = SelectField(
        "Source",
        choices=[SelectChoice("", "Any source")] + [SelectChoice(*item) for item in SOURCE_LABELS.items()],
        default="",
    )
    key = SelectField("API key", choices=[SelectChoice("", "Any key")], default="")
    user = SelectField("User", choices=[SelectChoice("", "Any user")], default="")
    status = StringField("Status", render_kw={"placeholder": "404 or 4xx"})
    model = StringField("Model", render_kw={"placeholder": "any", "list": "models"})
    endpoint = StringField("Endpoint", render_kw={"placeholder": "/api/chat"})
    ip = StringField("Client IP", render_kw={"placeholder": "any"})
    request_id = StringField("Request ID", render_kw={"placeholder": "X-Request-ID"})
    since = StringField("From (UTC)", render_kw={"type": "datetime-local", "step": "1"})
    until = StringField("Until (UTC)", render_kw={"type": "datetime-local", "step": "1"})

    def fill_choices(self) -> None:
        """Offer every key (revoked ones too: their requests stay in the log) and every user."""
        keys = db.session.scalars(sa.select(APIKey).order_by(APIKey.name, APIKey.id))
        self.key.choices = [SelectChoice("", "Any key")] + [
            SelectChoice(str(key.id), f"{key.name} ({key.prefix}…)" + ("" if key.is_active else " — revoked"))
            for key in keys
        ]
        users = db.session.scalars(sa.select(User).order_by(User.username))
        self.user.choices = [SelectChoice("", "Any user")] + [
            SelectChoice(str(user.id), user.username) for user in users
        ]

    def filters(self) -> RequestFilters | None:
        """The filters of the query string; ``None`` with the error shown under its field."""
        try:
            return parse_filters(request.args)
        except ServiceError as exc:
            apply_error(self, exc)
            return None

    def active_args(self) -> dict[str, str]:
        """The filters as query arguments, to keep them in pagination and export links."""
        args = request.args
        return {name: args[name].strip() for name in FILTER_NAMES if args.get(name, "").strip()}


def _filter_form() -> RequestFilterForm:
    form = RequestFilterForm(formdata=request.args)
    form.fill_choices()
    return form


@bp.get("/requests")
def index():
    """The request log, newest first, filterable by source, key, user, status and model."""
    form = _filter_form()
    filters = form.filters()
    if filters is None:
        return _render(form, None, 400)
    page = request_page(
        db.session, filters=filters, page=request.args.get("page", 1, type=int), per_page=PER_PAGE
    )
    if page.page > page.pages:  # an old link past the end: show the last page instead of nothing
        page = request_page(db.session, filters=filters, page=page.pages, per_page=PER_PAGE)
    return _render(form, page)


def _render(form: RequestFilterForm, page, status: int = 200):
    rows = page.rows if page else []
    context = {
        "form": form,
        "page": page,
        "rows": rows,
        "who": identities_of(db.session, rows),
        "args": form.active_args(),
        "filtered": bool(form.active_args()),
        "models": known_models(),
        "sources": SOURCE_LABELS,
        # Only an empty filtered page needs it ("no match, but N requests in all"): counting is not free.
        "total": _log_size() if page is not None and not rows and form.active_args() else 0,
    }
    return render_template("requests/index.html", **context), status


def _log_size() -> int:
    return db.session.scalar(sa.select(sa.func.count(RequestLog.id))) or 0


DETAIL_MAX_ROWS = 20  # a client may reuse an X-Request-ID: the newest rows that carry it


@bp.get("/requests/<request_id>")
def detail(request_id: str):
    """A request by its ``X-Request-ID``: every field of its row, who sent it, its timings; else 404."""
    rows = []
    if len(request_id) <= TEXT_MAX["request_id"]:
        query = (
            sa.select(RequestLog)
            .where(RequestLog.request_id == request_id)
            .order_by(RequestLog.created_at.desc(), RequestLog.id.desc())
            .limit(DETAIL_MAX_ROWS)
        )
        rows = list(db.session.scalars(query))
    if not rows:
        message = f"No request with the ID “{request_id[:64]}” is in the log."
        return render_template("errors/error.html", code=404, title="Request not found", message=message), 404
    return render_template(
        "requests/detail.html",
        request_id=request_id,
        rows=rows,
        who=identities_of(db.session, rows),
        sources=SOURCE_LABELS,
    )


@bp.get("/requests.csv")
@accepts_bearer
def export():
    """Every request matching the filters as CSV: names, not ids; rounded milliseconds; safe cells."""
    try:
        filters = parse_filters(request.args)
    except ServiceError as exc:
        return Response(f"invalid filters: {exc.message}\n", status=400, mimetype="text/plain")
    rows = iter_requests(db.session, filters=filters)
    named = (line for chunk in _chunks(rows, 500) for line in named_rows(db.session, chunk))
    filename = f"seadragon-requests-{utcnow():%Y%m%d-%H%M%S}.csv"
    return Response(
        stream_with_context(_csv_chunks(csv_rows(named))),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _chunks(rows: Iterator[RequestLog], size: int) -> Iterator[list[RequestLog]]:
    # Names are looked up per chunk: three queries per 500 rows, never the whole log in memory.
    while chunk := list(islice(rows, size)):
        yield chunk


def _csv_chunks(lines: Iterable[list[str]], per_chunk: int = 500) -> Iterator[str]:
    # Streamed in chunks: an export of a year of requests never sits in memory whole.
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for number, line in enumerate(lines, 1):
        writer.writerow(line)
        if number % per_chunk == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def known_models(limit: int = 200) -> list[str]:
    """Model names seen in the log, for the filter's suggestions."""
    query = sa.select(RequestLog.model).where(RequestLog.model.is_not(None)).distinct().limit(limit)
    return sorted(db.session.scalars(query))


def usage_summary(kind: str) -> dict[int, dict[str, Usage]]:
    """Usage per key (``kind="key"``), whitelist entry (``"entry"``) or user over 24 h and 7 d, by id."""
    reader = {"key": usage_by_key, "entry": usage_by_entry, "user": usage_by_user}[kind]
    now = utcnow()
    summary: dict[int, dict[str, Usage]] = {}
    for window, length in USAGE_WINDOWS.items():
        for owner, usage in reader(db.session, since=now - length).items():
            summary.setdefault(owner, {})[window] = usage
    return summary


@bp.app_template_filter("ms")
def format_ms(value: float | None) -> str:
    """Milliseconds as people read them: ``85 ms``, ``1.4 s``, ``2 min 05 s``."""
    if value is None:
        return "—"
    if value < 1000:
        return f"{value:.0f} ms"
    seconds = value / 1000
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


@bp.app_template_filter("compact")
def format_compact(value: int | None) -> str:
    """A count in at most four characters: ``950``, ``12.3k``, ``4.1M``."""
    if value is None:
        return "—"
    for limit, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if value >= limit:
            scaled = value / limit
            return f"{scaled:.1f}{suffix}" if scaled < 100 else f"{scaled:.0f}{suffix}"
    return str(value)


@bp.app_template_global("requests_url")
def requests_url(endpoint: str = "requests.index", filters: dict | None = None, **more) -> str:
    """A link to the requests page (or its export) with these filters.

    Built by hand rather than through ``url_for(**filters)``: one filter is called ``endpoint``.
    """
    args = {**(filters or {}), **more}
    query = urlencode({name: value for name, value in args.items() if value not in (None, "")})
    return url_for(endpoint) + (f"?{query}" if query else "")
