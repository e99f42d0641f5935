"""Policies per identity (docs/contract.md §7): the fields, their checks, model matching.

Framework-free, shared by the admin app (which validates and stores policies) and the
proxy (which enforces them). An API key, a whitelist entry and a user each carry the
columns of :data:`POLICY_FIELDS` (``expires_at`` on keys only); ``None`` means no limit::

    policy = Policy.of(api_key)                       # the stored fields, as one value
    policy = effective_user_policy(Policy.of(user), settings)   # WEBCHAT_* fill unset ones
    if not model_allowed(policy, body["model"]): ...  # 403, never forwarded
    if policy.expired(utcnow()): ...                  # 401 API key expired

Model names are compared normalised (:func:`normalise_model_name`): ``llama3.2``,
``library/llama3.2`` and ``registry.ollama.ai/library/llama3.2:latest`` are one model.
A pattern is normalised the same way, except that one holding a ``*`` gets no ``:latest``
(``qwen*`` covers every tag of every qwen model, ``*-cloud`` every cloud model); ``*``
matches any run of characters, and nothing else is special.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from common.models import parse_utc
from common.settings import Settings

MODELS, RPM, MAX_QUEUED, MAX_CONCURRENT, DAILY_TOKENS, EXPIRES_AT = (
    "models",
    "rpm",
    "max_queued",
    "max_concurrent",
    "daily_tokens",
    "expires_at",
)
DAILY_GPU_SECONDS = "daily_gpu_seconds"  # docs/contract.md §13
# Every policy field; users and whitelist entries carry all but ``expires_at``.
POLICY_FIELDS: tuple[str, ...] = (
    MODELS,
    RPM,
    MAX_QUEUED,
    MAX_CONCURRENT,
    DAILY_TOKENS,
    DAILY_GPU_SECONDS,
    EXPIRES_AT,
)
LIMIT_FIELDS: tuple[str, ...] = (MODELS, RPM, MAX_QUEUED, MAX_CONCURRENT, DAILY_TOKENS, DAILY_GPU_SECONDS)
# Inclusive ranges of the number fields (as the WEBCHAT_* defaults in common/settings.py).
LIMIT_RANGES: dict[str, tuple[int, int]] = {
    RPM: (1, 1_000_000),
    MAX_QUEUED: (1, 100_000),
    MAX_CONCURRENT: (1, 10_000),
    DAILY_TOKENS: (1, 10**12),
    DAILY_GPU_SECONDS: (1, 10**9),
}
MAX_PATTERNS = 100
PATTERN_MAX_LENGTH = 200
# What a model name is made of in Ollama (host[:port]/namespace/model:tag), plus the wildcard.
PATTERN_CHARS = re.compile(r"[A-Za-z0-9._:/*-]+")
DEFAULT_REGISTRY = "registry.ollama.ai/"
DEFAULT_NAMESPACE = "library/"
DEFAULT_TAG = ":latest"
# A header name is an RFC 9110 token; these carry credentials or routing and never name an end user
# (docs/contract.md §16: an end user's name reaches the request log, a credential never may).
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}")
RESERVED_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "cookie", "host", "content-length"}
)


class PolicyError(ValueError):
    """A policy field the caller may not set like this; ``field`` names it."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True, slots=True)
class Policy:
    """One identity's limits; ``None`` (or no patterns) means no limit."""

    models: tuple[str, ...] = ()
    rpm: int | None = None
    max_queued: int | None = None
    max_concurrent: int | None = None
    daily_tokens: int | None = None
    expires_at: datetime | None = None
    daily_gpu_seconds: int | None = None

    @classmethod
    def of(cls, row: Any) -> Policy:
        """The policy stored on a model row (``APIKey``, ``WhitelistEntry`` or ``User``)."""
        return cls(
            models=tuple(getattr(row, MODELS, None) or ()),
            rpm=getattr(row, RPM, None),
            max_queued=getattr(row, MAX_QUEUED, None),
            max_concurrent=getattr(row, MAX_CONCURRENT, None),
            daily_tokens=getattr(row, DAILY_TOKENS, None),
            expires_at=getattr(row, EXPIRES_AT, None),
            daily_gpu_seconds=getattr(row, DAILY_GPU_SECONDS, None),
        )

    def expired(self, now: datetime) -> bool:
        """Whether ``expires_at`` has passed at ``now`` (timezone-aware)."""
        return self.expires_at is not None and self.expires_at <= now


def effective_user_policy(policy: Policy, settings: Settings) -> Policy:
    """A user's policy with unset ``rpm`` / ``daily_tokens`` / ``daily_gpu_seconds`` taken from WEBCHAT_*."""
    return Policy(
        models=policy.models,
        rpm=policy.rpm if policy.rpm is not None else settings.webchat_rpm,
        max_queued=policy.max_queued,
        max_concurrent=policy.max_concurrent,
        daily_tokens=policy.daily_tokens
        if policy.daily_tokens is not None
        else settings.webchat_daily_tokens,
        expires_at=policy.expires_at,
        daily_gpu_seconds=policy.daily_gpu_seconds
        if policy.daily_gpu_seconds is not None
        else settings.webchat_daily_gpu_seconds,
    )


# -- model names -------------------------------------------------------------


def _normalise(name: str, *, add_tag: bool) -> str:
    text = name.strip().lower()  # Ollama compares model names ignoring case
    if text.startswith(DEFAULT_REGISTRY):
        text = text[len(DEFAULT_REGISTRY) :]
    if text.startswith(DEFAULT_NAMESPACE):
        text = text[len(DEFAULT_NAMESPACE) :]
    last = text.rsplit("/", 1)[-1]
    if add_tag and ":" not in last:
        text += DEFAULT_TAG
    return text


# Every request normalises its model and matches it against its identity's patterns: the few
# distinct names and patterns in use are remembered, bounded (least recently used go first).
NAME_CACHE_SIZE = 4096


@functools.lru_cache(maxsize=NAME_CACHE_SIZE)
def normalise_model_name(name: str) -> str:
    """``name`` as Ollama resolves it: lower case, no default registry or namespace, ``:latest`` added."""
    return _normalise(name, add_tag=True)


def normalise_pattern(pattern: str) -> str:
    """A pattern normalised like a name; one with a ``*`` gets no ``:latest`` (``*`` may cover the tag)."""
    return _normalise(pattern, add_tag="*" not in pattern)


@functools.lru_cache(maxsize=NAME_CACHE_SIZE)
def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A model pattern compiled once: ``*`` covers any run of characters, the rest is literal."""
    parts = normalise_pattern(pattern).split("*")
    return re.compile(".*".join(re.escape(part) for part in parts))


def model_allowed(policy: Policy, name: str) -> bool:
    """Whether ``policy`` lets its identity use the model ``name`` (no patterns: every model)."""
    if not policy.models:
        return True
    normalised = normalise_model_name(name)
    return any(pattern_regex(pattern).fullmatch(normalised) for pattern in policy.models)


def allowed_models(policy: Policy, names: Iterable[str]) -> list[str]:
    """The names of ``names`` that ``policy`` allows, in their order (for ``/api/tags`` and the like)."""
    return [name for name in names if model_allowed(policy, name)]


# -- validation --------------------------------------------------------------


def _check_limit(field: str, value: object) -> int:
    low, high = LIMIT_RANGES[field]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PolicyError(f"{field} must be a whole number from {low} to {high}, or null for no limit", field)
    return value


def _check_models(value: object) -> list[str] | None:
    if not isinstance(value, list):
        raise PolicyError("models must be an array of model-name patterns, or null for every model", MODELS)
    if len(value) > MAX_PATTERNS:
        raise PolicyError(f"models may hold at most {MAX_PATTERNS} patterns", MODELS)
    patterns: list[str] = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise PolicyError("models: every pattern must be a non-empty string", MODELS)
        text = item.strip()
        if len(text) > PATTERN_MAX_LENGTH or not PATTERN_CHARS.fullmatch(text):
            raise PolicyError(
                f"models: {text[:40]!r} is not a model-name pattern (letters, digits, . _ : / - and *)",
                MODELS,
            )
        if text not in patterns:
            patterns.append(text)
    return patterns or None  # no patterns means every model: stored as unset


def parse_expires_at(value: object) -> datetime:
    """An ISO 8601 time as timezone-aware UTC; a time without a zone is read as UTC."""
    if not isinstance(value, str) or not value.strip():
        raise PolicyError(
            "expires_at must be an ISO 8601 time like 2027-01-31T00:00:00Z, or null", EXPIRES_AT
        )
    moment = parse_utc(value.strip())
    if moment is None:
        raise PolicyError(
            f"expires_at: {value[:40]!r} is not an ISO 8601 time like 2027-01-31T00:00:00Z", EXPIRES_AT
        )
    return moment


def validate_policy_patch(
    patch: Mapping[str, object], fields: Iterable[str] = POLICY_FIELDS
) -> dict[str, Any]:
    """The checked values of ``patch`` (``None`` clears); a bad or unknown field raises PolicyError."""
    allowed = tuple(fields)
    clean: dict[str, Any] = {}
    for field, value in patch.items():
        if field not in allowed:
            raise PolicyError(f"{field}: unknown field (expected one of {', '.join(allowed)})", field)
        if value is None:
            clean[field] = None
        elif field == MODELS:
            clean[field] = _check_models(value)
        elif field == EXPIRES_AT:
            clean[field] = parse_expires_at(value)
        else:
            clean[field] = _check_limit(field, value)
    return clean


def validate_header_name(value: object, field: str = "end_user_header") -> str | None:
    """An HTTP header name (RFC 9110 token) that may identify end users, or ``None`` to clear it."""
    if value is None:
        return None
    if not isinstance(value, str) or not HEADER_NAME.fullmatch(value.strip()):
        raise PolicyError(f"{field} must be an HTTP header name like X-OpenWebUI-User-Id, or null", field)
    name = value.strip()
    if name.lower() in RESERVED_HEADERS:
        raise PolicyError(
            f"{field}: {name} carries credentials or routing and cannot name an end user", field
        )
    return name
