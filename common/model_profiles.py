"""Model profiles (docs/contract.md §12): the load options and keep-alive the gateway owns per model.

Framework-free, shared by the admin app (which validates and stores profiles) and the proxy
(which applies them). Ollama reloads a loaded model when a request's ``api.Runner`` options
differ from the ones it was loaded with (``server/sched.go`` ``needsReload``), and the last
request's ``keep_alive`` decides when it unloads (``useLoadedRunner``). A profile fixes both::

    profile = validate_profile({"load_options": {"num_ctx": 8192}, "keep_alive_max": "1h"})
    adjusted = adjust_body(body_bytes, payload, profile)   # None: forward the bytes untouched

A model without a profile takes :func:`default_profile` (``LOAD_OPTIONS``, ``KEEP_ALIVE_MIN``,
``KEEP_ALIVE_MAX``). Durations are what Ollama accepts (:mod:`common.durations`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from common.durations import DurationError, format_duration, parse_keep_alive

# api.Runner in Ollama's api/types.go: the options that must be set when a model is loaded.
RUNNER_KEYS: tuple[str, ...] = (
    "num_ctx",
    "num_batch",
    "num_gpu",
    "main_gpu",
    "use_mmap",
    "num_thread",
    "draft_num_predict",
)
PROFILE_FIELDS = ("load_options", "keep_alive", "keep_alive_min", "keep_alive_max", "max_parallel")
# The routes whose bodies Ollama reads ``options`` and ``keep_alive`` from (docs/contract.md §12).
NATIVE_ROUTES = frozenset({"/api/generate", "/api/chat", "/api/embed", "/api/embeddings"})
MAX_PARALLEL_LIMIT = 10_000


class ProfileError(ValueError):
    """A profile field that cannot be stored as given; ``field`` names it."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ModelProfile:
    """One model's profile; durations keep the form the admin gave (``"30m"`` or seconds)."""

    load_options: str | Mapping[str, Any] = "client"
    keep_alive: str | float | None = None
    keep_alive_min: str | float | None = None
    keep_alive_max: str | float | None = None
    max_parallel: int | None = None
    runner: tuple[tuple[str, Any], ...] = field(default=(), compare=False, repr=False)

    def as_json(self) -> dict[str, Any]:
        """The profile's fields as the admin API returns them."""
        options = self.load_options if isinstance(self.load_options, str) else dict(self.load_options)
        return {
            "load_options": options,
            "keep_alive": self.keep_alive,
            "keep_alive_min": self.keep_alive_min,
            "keep_alive_max": self.keep_alive_max,
            "max_parallel": self.max_parallel,
        }


def _check_duration(name: str, value: object) -> str | float | None:
    if value is None:
        return None
    try:
        parse_keep_alive(value)
    except DurationError:
        raise ProfileError(
            f'{name} must be a number of seconds or a duration like "30m" or "1h30m", or null', name
        ) from None
    if isinstance(value, str):
        return value.strip()
    return int(value) if float(value).is_integer() else float(value)  # type: ignore[arg-type]


def _check_load_options(value: object) -> str | dict[str, Any]:
    if value is None:
        return "client"
    if isinstance(value, str) and value in ("client", "server"):
        return value
    if not isinstance(value, dict):
        raise ProfileError(
            'load_options must be "client", "server" or an object of Runner options', "load_options"
        )
    clean: dict[str, Any] = {}
    for key, item in value.items():
        if key not in RUNNER_KEYS:
            raise ProfileError(
                f"load_options: {str(key)[:40]!r} is not a Runner option (one of {', '.join(RUNNER_KEYS)})",
                "load_options",
            )
        if key == "use_mmap":
            if not isinstance(item, bool):
                raise ProfileError("load_options: use_mmap must be true or false", "load_options")
        elif isinstance(item, bool) or not isinstance(item, int) or not -1 <= item <= 10_000_000:
            raise ProfileError(f"load_options: {key} must be a whole number", "load_options")
        elif key == "num_ctx" and item < 1:
            raise ProfileError("load_options: num_ctx must be at least 1", "load_options")
        clean[key] = item
    return clean


def validate_profile(body: object) -> ModelProfile:
    """A profile from an admin's JSON object; an unknown or bad field raises ProfileError naming it."""
    if not isinstance(body, dict):
        raise ProfileError("expected a JSON object with the profile's fields", "body")
    for name in body:
        if name not in PROFILE_FIELDS:
            expected = ", ".join(PROFILE_FIELDS)
            raise ProfileError(f"{name}: unknown field (expected one of {expected})", str(name))
    durations = {name: _check_duration(name, body.get(name)) for name in PROFILE_FIELDS[1:4]}
    low, high = durations["keep_alive_min"], durations["keep_alive_max"]
    if low is not None and high is not None and parse_keep_alive(low) > parse_keep_alive(high):
        raise ProfileError("keep_alive_min must not be longer than keep_alive_max", "keep_alive_min")
    parallel = body.get("max_parallel")
    if parallel is not None and (
        isinstance(parallel, bool) or not isinstance(parallel, int) or not 1 <= parallel <= MAX_PARALLEL_LIMIT
    ):
        raise ProfileError(
            f"max_parallel must be a whole number from 1 to {MAX_PARALLEL_LIMIT}, or null", "max_parallel"
        )
    return ModelProfile(
        load_options=_check_load_options(body.get("load_options")),
        keep_alive=durations["keep_alive"],
        keep_alive_min=low,
        keep_alive_max=high,
        max_parallel=parallel,
    )


def default_profile(settings: Any) -> ModelProfile:
    """The profile of a model without one: the LOAD_OPTIONS, KEEP_ALIVE_MIN and KEEP_ALIVE_MAX settings."""
    return ModelProfile(
        load_options=settings.load_options,
        keep_alive_min=settings.keep_alive_min,
        keep_alive_max=settings.keep_alive_max,
    )


def _shown(value: object) -> str:
    """A value as a header may carry it: printable ASCII only (JSON escapes the rest), 40 at most."""
    if value is None:
        return "none"
    if isinstance(value, str) and value.isascii() and value.isprintable():
        return value[:40]
    return json.dumps(value)[:40]


def _members(text: str) -> list[tuple[str, int, int]]:
    """Each top-level member of a JSON object text as (key, start, end) spans, in order."""
    decoder = json.JSONDecoder()
    spans: list[tuple[str, int, int]] = []
    ws = json.decoder.WHITESPACE.match  # type: ignore[attr-defined]
    index = ws(text, 0).end()
    if text[index : index + 1] != "{":
        raise ValueError("not an object")
    index = ws(text, index + 1).end()
    if text[index : index + 1] == "}":
        return spans
    while True:
        start = index
        key, index = json.decoder.scanstring(text, index + 1)  # type: ignore[attr-defined]
        index = ws(text, index).end() + 1  # past the colon
        _, index = decoder.raw_decode(text, ws(text, index).end())
        spans.append((key, start, index))
        index = ws(text, index).end()
        if text[index] == "}":
            return spans
        index = ws(text, index + 1).end()  # past the comma


def _go_field(payload: Mapping[str, Any], name: str) -> list[str]:
    """The keys Go's encoding/json reads as ``name`` (it matches field names ignoring case)."""
    return [key for key in payload if key.casefold() == name]


def adjust_body(
    content: bytes, payload: Mapping[str, Any], profile: ModelProfile
) -> tuple[bytes, list[str]] | None:
    """``content`` with the profile applied and the changes named; None when nothing changes."""
    option_keys = _go_field(payload, "options")
    asked: dict[str, Any] = {}
    for key in option_keys:  # Go decodes every spelling into one map, later keys winning
        if isinstance(payload[key], dict):
            asked.update(payload[key])
    options = dict(asked)
    changes: list[str] = []
    mode = profile.load_options
    if mode != "client":
        pinned = {} if mode == "server" else dict(mode)
        for key in RUNNER_KEYS:
            if key in pinned:
                if asked.get(key) != pinned[key] or key not in asked:
                    changes.append(f"{key}={_shown(pinned[key])} (asked {_shown(asked.get(key))})")
                options[key] = pinned[key]
            elif key in options:
                changes.append(f"{key}=default (asked {_shown(options.pop(key))})")
    new_keep_alive, keep_change = _keep_alive(payload, profile)
    if keep_change:
        changes.append(keep_change)
    if not changes:
        return None
    text = content.decode("utf-8")
    drop = set(_go_field(payload, "keep_alive") if keep_change else ()) | (
        set(option_keys) if options != asked else set()
    )
    kept = [text[start:end] for key, start, end in _members(text) if key not in drop]
    if options != asked:
        kept.append('"options":' + json.dumps(options, ensure_ascii=False, separators=(",", ":")))
    if keep_change:
        kept.append('"keep_alive":' + json.dumps(new_keep_alive, ensure_ascii=False))
    return ("{" + ",".join(kept) + "}").encode("utf-8"), changes


def _keep_alive(payload: Mapping[str, Any], profile: ModelProfile) -> tuple[Any, str | None]:
    """The keep_alive to send and how it changed (None: leave the request's as it is)."""
    keys = _go_field(payload, "keep_alive")
    asked = payload[keys[-1]] if keys else None
    if asked is None:
        if profile.keep_alive is None:
            return None, None
        value = profile.keep_alive
        seconds = parse_keep_alive(value)
    else:
        try:
            seconds = parse_keep_alive(asked)
        except DurationError:
            return None, None  # Ollama answers it 400 itself
        value = asked
    low = profile.keep_alive_min
    high = profile.keep_alive_max
    if low is not None and seconds < parse_keep_alive(low):
        value = low
    elif high is not None and seconds > parse_keep_alive(high):
        value = high
    if asked is not None and value is asked:
        return None, None
    shown = _shown(value) if isinstance(value, str) else format_duration(parse_keep_alive(value))
    before = _shown(asked)
    return value, f"keep_alive={shown} (asked {before})"
