"""Durations as Ollama reads ``keep_alive``: a number of seconds or a Go duration string.

Ollama's ``api.Duration.UnmarshalJSON`` (``api/types.go``) takes a JSON number as seconds
and a string through Go's ``time.ParseDuration`` (``"30m"``, ``"1h30m"``, ``"-1s"``); a
negative value of either kind means "forever". A string of digits without a unit (other
than ``"0"``) is an error there, so it is one here too. Framework-free: the gateway and
the simulator both read durations with it.
"""

from __future__ import annotations

import math
import re

FOREVER = math.inf  # what a negative keep_alive means

# Go's units (time.ParseDuration), in seconds; both spellings of the micro sign.
_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d*)(?:\.(\d*))?(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


class DurationError(ValueError):
    """Not a duration Ollama would accept."""


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration string, as ``time.ParseDuration`` reads it (may be negative)."""
    if not isinstance(text, str):
        raise DurationError("expected a string")
    rest = text
    sign = 1.0
    if rest[:1] in ("-", "+"):
        sign = -1.0 if rest[0] == "-" else 1.0
        rest = rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise DurationError(f"invalid duration {text!r}")
    total = 0.0
    while rest:
        match = _PART.match(rest)
        if match is None or not (match.group(1) or match.group(2)):
            raise DurationError(f'invalid duration {text!r} (e.g. "30m", "1h30m", "90s")')
        whole = float(match.group(1) or 0)
        fraction = float("0." + match.group(2)) if match.group(2) else 0.0
        total += (whole + fraction) * _UNITS[match.group(3)]
        rest = rest[match.end() :]
    return sign * total


def parse_keep_alive(value: object) -> float:
    """Seconds of a ``keep_alive`` value (number or Go duration); negative values are FOREVER."""
    if isinstance(value, bool) or value is None:
        raise DurationError('expected a number of seconds or a duration string such as "30m"')
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise DurationError("expected a finite number of seconds")
        seconds = float(value)
    else:
        seconds = parse_go_duration(value)  # type: ignore[arg-type]
    return FOREVER if seconds < 0 else seconds


def format_duration(seconds: float) -> str:
    """A short Go-style form of ``seconds`` for messages (``30m``, ``1h30m``, ``45s``, ``-1`` = forever)."""
    if math.isinf(seconds):
        return "-1"
    if seconds == 0:
        return "0"
    if seconds != int(seconds):
        return f"{seconds:g}s"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{n}{u}" for n, u in ((hours, "h"), (minutes, "m"), (secs, "s")) if n) or "0"
