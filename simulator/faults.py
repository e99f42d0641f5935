"""Fault specs: what the simulator should break for one request (``X-Sim-Fault``) or for all of them.

A spec is a comma list of items, e.g. ``status=500``, ``stall_headers=2.5``,
``stall_mid=10,after=3``, ``drop_mid,after=2``, ``error_mid``, ``drop_headers``,
optionally with ``message=TEXT`` last (the message may contain commas).
"""

from __future__ import annotations

from dataclasses import dataclass

BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"
DEFAULT_MESSAGE = "simulated failure"
MODEL_PREFIX = "sim-fault:"  # "sim-fault:<spec>/<model>" in a request's "model" carries a spec


class FaultError(ValueError):
    """A fault spec could not be parsed."""


@dataclass(frozen=True, slots=True)
class Fault:
    """One request's injected failures; the defaults mean "behave normally"."""

    status: int | None = None  # answer at once with this status and an error body
    stall_headers: float = 0.0  # seconds to wait before anything is sent
    drop_headers: bool = False  # close the connection before sending a response
    stall_mid: float = 0.0  # seconds to stall once `after` chunks have been sent
    drop_mid: bool = False  # close the connection once `after` chunks have been sent
    error_mid: bool = False  # end the stream with an in-band error once `after` chunks have been sent
    after: int = 1
    message: str | None = None
    spec: str = ""

    @property
    def any_mid(self) -> bool:
        """Whether something happens in the middle of the body."""
        return bool(self.stall_mid or self.drop_mid or self.error_mid)

    def status_message(self) -> str:
        """The error text for a ``status=`` fault."""
        if self.message:
            return self.message
        return BUSY_MESSAGE if self.status == 503 else f"{DEFAULT_MESSAGE} (status {self.status})"


NO_FAULT = Fault()


def parse_fault(spec: str | None) -> Fault:
    """Parse a spec such as ``"stall_mid=5,after=3"``; an empty spec is :data:`NO_FAULT`."""
    spec = (spec or "").strip()
    if not spec:
        return NO_FAULT
    values: dict[str, object] = {"spec": spec}
    rest = spec
    while rest:
        if rest.startswith("message="):
            values["message"] = rest[len("message=") :]
            break
        item, _, rest = rest.partition(",")
        item = item.strip()
        rest = rest.lstrip()
        if not item:
            continue
        key, has_value, raw = item.partition("=")
        key = key.strip().lower().replace("-", "_")
        if key in ("drop_headers", "drop_mid", "error_mid"):
            if has_value and raw.strip().lower() not in ("1", "true", "yes"):
                raise FaultError(f"{key} takes no value, got {raw!r}")
            values[key] = True
        elif key == "status":
            values[key] = _number(key, raw, int, 100, 599)
        elif key in ("stall_headers", "stall_mid"):
            values[key] = _number(key, raw, float, 0.0, 86_400.0)
        elif key == "after":
            values[key] = _number(key, raw, int, 0, 10_000_000)
        else:
            raise FaultError(f"unknown fault {key!r}")
    return Fault(**values)  # type: ignore[arg-type]


def split_model_fault(model: str) -> tuple[str, str] | None:
    """``"sim-fault:status=500/llama3.2"`` → ``("status=500", "llama3.2")``; None for a plain name."""
    if not model.startswith(MODEL_PREFIX):
        return None
    spec, _, name = model[len(MODEL_PREFIX) :].partition("/")
    return spec, name


def _number(key: str, raw: str, kind: type, low: float, high: float) -> int | float:
    try:
        value = kind(raw.strip())
    except ValueError:
        raise FaultError(f"{key} needs a number, got {raw!r}") from None
    if not low <= value <= high:
        raise FaultError(f"{key} must be from {low} to {high}, got {raw!r}")
    return value
