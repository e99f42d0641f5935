"""Model profiles at the gateway (docs/contract.md §12): rewrite a native request's load options.

A native generation (``/api/generate``, ``/api/chat``, ``/api/embed``, ``/api/embeddings``)
gets its model's profile (or ``LOAD_OPTIONS`` / ``KEEP_ALIVE_MIN`` / ``KEEP_ALIVE_MAX`` when
it has none) before it queues. Nothing to change: the body goes upstream byte for byte.
Something changed: the new body goes, and the response says what in ``X-Seadragon-Adjusted``.
Profiles come from the identity cache's snapshot, refreshed twice a second.

The request log notes whether Ollama loaded the model for a response: its final line's
``load_duration`` is the load (``server/routes.go`` sets it from the handler's start to the
runner being ready), a few milliseconds when the model was loaded already.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from common.model_profiles import NATIVE_ROUTES, ModelProfile, adjust_body, default_profile
from common.policies import normalise_model_name

if TYPE_CHECKING:
    from proxy_app.gateway import Gateway
    from proxy_app.proxied import ProxiedRequest

ADJUSTED_HEADER = "X-Seadragon-Adjusted"
# A load_duration this long (ns) means the model was loaded for the request: even a small model
# takes far longer to load, and a loaded one answers in milliseconds.
LOADED_AFTER_NS = 200_000_000
_LOAD_DURATION = re.compile(rb'(?<=[^\\])"load_duration"\s*:\s*(\d+)')


def profile_for(gw: Gateway, model: str | None) -> ModelProfile:
    """The profile of ``model``: its own, else the settings' defaults."""
    if model:
        own = gw.cache.snapshot.profiles.get(normalise_model_name(model))
        if own is not None:
            return own
    return default_profile(gw.settings)


def apply_profile(proxied: ProxiedRequest, content: bytes, fields: dict, model: str | None) -> bytes:
    """The body to send upstream: ``content`` itself, or rewritten by the model's profile."""
    if proxied.route.upstream_path not in NATIVE_ROUTES or not model:
        return content
    adjusted = adjust_body(content, fields, profile_for(proxied.gw, model))
    if adjusted is None:
        return content
    body, changes = adjusted
    proxied.adjusted = changes
    return body


def adjusted_headers(proxied: ProxiedRequest) -> list[tuple[str, str]]:
    """``X-Seadragon-Adjusted`` naming each change, when there was one."""
    return [(ADJUSTED_HEADER, "; ".join(proxied.adjusted))] if proxied.adjusted else []


def model_loaded(final_line: bytes) -> bool | None:
    """Whether a native response's final line shows a model load; None if it has no load_duration."""
    found = _LOAD_DURATION.findall(final_line[-8192:])
    return None if not found else int(found[-1]) >= LOADED_AFTER_NS
