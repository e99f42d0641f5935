"""Who may use Ollama's cloud models (docs/contract.md §3): the rule, apart from how they are served.

A cloud model (a tag ending in ``cloud``: ``gpt-oss:120b-cloud``, ``qwen3-coder:cloud``)
runs on ollama.com under the server owner's account. ``CLOUD_MODELS`` decides
who may spend that account: ``off`` nobody (403, never forwarded), ``admin``
admins and whitelisted IPs, ``on`` everyone.
"""

from __future__ import annotations

from common.settings import Settings
from common.sources import Identity, RequestSource
from proxy_app.errors import Forbidden

DISABLED = "cloud models are disabled on this gateway"
ADMINS_ONLY = "cloud models are for admins and whitelisted IPs only on this gateway"


def is_cloud_model(name: str | None) -> bool:
    """True when the tag (after the last ``:``) ends in ``cloud``: ``gpt-oss:120b-cloud``, ``x:cloud``."""
    if not name:
        return False
    last = name.strip().rsplit("/", 1)[-1]
    _, colon, tag = last.rpartition(":")
    return bool(colon) and tag.lower().endswith("cloud")


def admin_or_whitelisted(identity: Identity) -> bool:
    """Admins and whitelisted IPs: who may manage models and act with the owner's ollama.com account."""
    return identity.source is RequestSource.DIRECT_API or identity.is_admin


def check_cloud_access(settings: Settings, identity: Identity) -> None:
    """403 unless ``CLOUD_MODELS`` lets this identity use a cloud model."""
    if settings.cloud_models == "off":
        raise Forbidden(DISABLED)
    if settings.cloud_models == "admin" and not admin_or_whitelisted(identity):
        raise Forbidden(ADMINS_ONLY)
