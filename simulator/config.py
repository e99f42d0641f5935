"""The simulator's configuration: one dataclass, read from ``SEADRAGON_SIM_*`` or changed at run time."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from simulator.faults import FaultError, parse_fault

ENV_PREFIX = "SEADRAGON_SIM_"
DEFAULT_MODELS = ("llama3.2:latest", "qwen2.5-coder:7b")


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the field."""


@dataclass(frozen=True)
class SimulatorConfig:
    """How the fake Ollama behaves; every field can be overridden per run or at run time."""

    host: str = "127.0.0.1"
    port: int = 11434
    tokens: int = 20  # tokens per generation (options.num_predict and X-Sim-Tokens may change it)
    token_delay: float = 0.02  # seconds between two tokens
    first_token_delay: float = 0.0  # seconds before the first token (and the response headers)
    models: tuple[str, ...] = DEFAULT_MODELS
    num_parallel: int = 0  # like OLLAMA_NUM_PARALLEL; 0 means no cap
    max_queue: int = 512  # like OLLAMA_MAX_QUEUE: requests allowed to wait for a slot, then 503
    fault: str = ""  # an X-Sim-Fault spec applied to every request that brings none
    embedding_dim: int = 384
    version: str = "0.12.6"
    log_limit: int = 10_000  # entries kept in the /_sim/stats log (counters are never trimmed)
    max_loaded: int = 0  # like OLLAMA_MAX_LOADED_MODELS: models in VRAM at once, LRU evicted; 0: no cap
    load_time: float = 0.0  # seconds to load a model that is not in VRAM
    default_num_ctx: int = 4096  # the automatic num_ctx (Ollama's VRAM tier below 23 GiB)
    prompt_eval_rate: float = 0.0  # seconds per prompt token not already in the prefix cache

    def __post_init__(self) -> None:
        check = _Checker()
        check.int("port", self.port, 0, 65535)
        check.int("tokens", self.tokens, 0, 10_000_000)
        check.float("token_delay", self.token_delay, 0.0, 3600.0)
        check.float("first_token_delay", self.first_token_delay, 0.0, 3600.0)
        check.int("num_parallel", self.num_parallel, 0, 100_000)
        check.int("max_queue", self.max_queue, 0, 1_000_000)
        check.int("embedding_dim", self.embedding_dim, 1, 65_536)
        check.int("log_limit", self.log_limit, 1, 10_000_000)
        check.int("max_loaded", self.max_loaded, 0, 10_000)
        check.float("load_time", self.load_time, 0.0, 3600.0)
        check.int("default_num_ctx", self.default_num_ctx, 4, 10_000_000)
        check.float("prompt_eval_rate", self.prompt_eval_rate, 0.0, 60.0)
        if isinstance(self.models, str) or not all(isinstance(m, str) and m for m in self.models):
            raise ConfigError("models: expected a list of non-empty model names")
        try:
            parse_fault(self.fault)
        except FaultError as exc:
            raise ConfigError(f"fault: {exc}") from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> SimulatorConfig:
        """Defaults, then ``SEADRAGON_SIM_<FIELD>`` variables, then keyword overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name in field_names():
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is not None and raw != "":
                values[name] = coerce(name, raw, source=ENV_PREFIX + name.upper())
        values.update(overrides)
        return cls(**values)

    def updated(self, changes: Mapping[str, Any]) -> SimulatorConfig:
        """A copy with ``changes`` applied (strings and JSON values are coerced to the field's type)."""
        unknown = sorted(set(changes) - set(field_names()))
        if unknown:
            raise ConfigError(f"{unknown[0]}: no such setting")
        coerced = {name: coerce(name, value) for name, value in changes.items()}
        return dataclasses.replace(self, **coerced)

    def as_dict(self) -> dict[str, Any]:
        """The configuration as JSON-ready values."""
        data = dataclasses.asdict(self)
        data["models"] = list(self.models)
        return data

    def to_args(self) -> list[str]:
        """Command-line flags for ``python -m simulator`` that reproduce this configuration."""
        args: list[str] = []
        for name, value in self.as_dict().items():
            if name in ("host", "port"):
                continue
            text = ",".join(value) if isinstance(value, list) else str(value)
            args.append(f"--{name.replace('_', '-')}={text}")
        return args


def field_names() -> list[str]:
    """The names of every configuration field."""
    return [f.name for f in dataclasses.fields(SimulatorConfig)]


def coerce(name: str, value: Any, *, source: str | None = None) -> Any:
    """Turn a string (env, CLI, header) or JSON value into the type of field ``name``."""
    label = source or name
    kind = {f.name: f.type for f in dataclasses.fields(SimulatorConfig)}[name]
    try:
        if kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind == "tuple[str, ...]":
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(item).strip() for item in items if str(item).strip())
        if not isinstance(value, str):
            raise ValueError
        return value
    except (TypeError, ValueError):
        raise ConfigError(f"{label}: expected {kind}, got {value!r}") from None


class _Checker:
    """Range checks that raise one clear line naming the field."""

    def int(self, name: str, value: Any, low: int, high: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"{name}: expected an integer from {low} to {high}, got {value!r}")

    def float(self, name: str, value: Any, low: float, high: float) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise ConfigError(f"{name}: expected seconds from {low} to {high}, got {value!r}")
