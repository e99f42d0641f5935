"""The JSON admin API under ``/api/admin`` (docs/contract.md §3, §6, §7): one module per concern."""

from admin_app.api import apikeys, audit, models, requests, tokens, users, whitelist  # noqa: F401  (they add the routes)
from admin_app.api.base import bp

__all__ = ["bp"]
