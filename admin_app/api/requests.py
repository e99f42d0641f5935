"""``/api/admin/requests``: the request log as JSON for scripts (docs/contract.md §6)."""

from __future__ import annotations

from flask import request

from admin_app.api.base import bp
from admin_app.extensions import db
from admin_app.services import request_log as service
from common.usage import named_rows


@bp.get("/requests")
def requests_list():
    """``{"requests": [...], "next_cursor"}``: rows newest first, filtered as the requests page, by cursor.

    ``limit`` is 1–500 (default 100); pass ``next_cursor`` back as ``cursor`` for the next page
    (``null`` when there is none).
    """
    filters = service.parse_filters(request.args)
    limit = service.parse_limit(request.args.get("limit"))
    after = service.parse_cursor(request.args.get("cursor"))
    rows, next_cursor = service.slice_rows(filters, limit, after)
    return {"requests": named_rows(db.session, rows), "next_cursor": next_cursor}
