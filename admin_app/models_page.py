"""The panel's Models page (docs/contract.md §12): each model, where it is loaded, its profile
edited in place, its loads and adjustments.

The rows come from the gateway's ``GET /api/admin/models`` (only the gateway knows what each
backend has loaded); the page's script renders them and saves a profile with ``PUT`` (or
removes it with ``DELETE``) on ``/api/admin/models/{model}/profile``, the same service as
any script uses. Defaults for models without a profile come from the settings.
"""

from __future__ import annotations

from flask import current_app, render_template

from admin_app.identity import admin_blueprint
from common.model_profiles import RUNNER_KEYS

bp = admin_blueprint("models", __name__, "/admin/models")


@bp.get("/")
def index():
    """The model table, filled and edited by models.js."""
    settings = current_app.config["SEADRAGON"]
    defaults = {
        "load_options": settings.load_options,
        "keep_alive_min": settings.keep_alive_min,
        "keep_alive_max": settings.keep_alive_max,
    }
    return render_template("models/index.html", defaults=defaults, runner_keys=RUNNER_KEYS)
