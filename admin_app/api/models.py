"""``/api/admin/models/{model}/profile``: set and remove a model's profile (docs/contract.md §12).

``GET /api/admin/models`` is the gateway's (``proxy_app/models_admin.py``): it alone knows
which backend has which model loaded.
"""

from __future__ import annotations

from flask import g

from admin_app.api.base import body, bp
from admin_app.services import model_profiles as service


@bp.put("/models/<path:model>/profile")
def model_profile_set(model: str):
    """Store the model's whole profile → 200 + profile; 400 naming a bad field."""
    name, profile = service.set_profile(model, body(), g.api_user)
    return service.profile_json(name, profile)


@bp.delete("/models/<path:model>/profile")
def model_profile_delete(model: str):
    """Remove the model's profile → 200 + the profile it had; 404 if it had none."""
    name, profile = service.delete_profile(model, g.api_user)
    return service.profile_json(name, profile)
