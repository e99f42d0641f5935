"""``GET /api/admin/models`` (docs/contract.md §12): every model the backends have, where it is
loaded, its profile, and its loads and adjustments over the last 24 hours.

Served by the gateway, not the admin app: which backend has or has loaded a model is known
only to the gateway's health checks (``/api/tags`` and ``/api/ps`` of each backend). Profiles
and the 24-hour counts are read from the database, so a profile just saved shows at once.
Profiles are written by the admin app (``PUT``/``DELETE /api/admin/models/{model}/profile``).
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import sqlalchemy as sa
from quart import Blueprint, Response, jsonify

from common.model_profiles import ModelProfile
from common.models import ModelProfileRow, RequestLog, utcnow
from common.policies import normalise_model_name
from proxy_app.gateway import Gateway, gateway
from proxy_app.identity_snapshot import read_profiles
from proxy_app.monitor import require_admin
from proxy_app.upstream import redact_url

bp = Blueprint("models_admin", __name__)

WINDOW = timedelta(hours=24)


@bp.get("/api/admin/models")
async def models() -> Response:
    """Every model the backends have: where it is loaded, its profile, its loads and adjustments in 24 h.

    ``[{"model", "backends", "loaded_on", "profile", "adjusted_24h", "loads_24h"}]``, by name.
    """
    gw = gateway()
    await require_admin(gw)
    profiles, adjusted, loads = await _from_database(gw)
    names: set[str] = set(profiles)
    for backend in gw.pool.backends:
        names.update(normalise_model_name(name) for name in backend.models or ())
    rows = []
    for name in sorted(names):
        profile = profiles.get(name)
        rows.append(
            {
                "model": name,
                "backends": [redact_url(b.url) for b in gw.pool.backends if _lists(b.models, name)],
                "loaded_on": [redact_url(b.url) for b in gw.pool.backends if _lists(b.loaded, name)],
                "profile": None if profile is None else profile.as_json(),
                "adjusted_24h": adjusted[name],
                "loads_24h": loads[name],
            }
        )
    return jsonify(rows)


def _lists(names: frozenset[str] | None, model: str) -> bool:
    return bool(names) and any(normalise_model_name(name) == model for name in names or ())


async def _from_database(gw: Gateway) -> tuple[dict[str, ModelProfile], Counter[str], Counter[str]]:
    """The stored profiles, and per model the adjusted requests and loads of the last 24 hours."""
    since = utcnow() - WINDOW
    log = RequestLog.__table__.c
    counts = sa.select(
        log.model,
        sa.func.count().filter(log.adjusted.is_(True)),
        sa.func.count().filter(log.model_loaded.is_(True)),
    ).where(
        log.created_at >= since,
        log.model.is_not(None),
        sa.or_(log.adjusted.is_(True), log.model_loaded.is_(True)),
    )
    async with gw.engine.connect() as conn:
        profiles = read_profiles(await conn.execute(sa.select(*ModelProfileRow.__table__.columns)))
        rows = (await conn.execute(counts.group_by(log.model))).all()
    adjusted, loads = Counter[str](), Counter[str]()
    for model, adjusted_count, load_count in rows:
        name = normalise_model_name(model)  # "llama3.2" and "llama3.2:latest" are one model
        adjusted[name] += adjusted_count
        loads[name] += load_count
    return profiles, adjusted, loads
