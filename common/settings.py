"""Settings from ``SEADRAGON_*`` environment variables, parsed strictly.

Every bad value raises :class:`ConfigError` whose message is one line that
names the variable, so start-up can stop with exactly that line.

Longer than 300 lines because every setting is one field, one parse line and one check; the
parsers are kept beside them so a reader sees each variable's whole rule in one file.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from common.durations import DurationError, parse_keep_alive
from common.network import normalise_network

PREFIX = "SEADRAGON_"
ROOT = Path(__file__).resolve().parent.parent

DEFAULT_CORS_ORIGINS = (
    "https://chat.seadragoninkmortal.com",
    "https://admin.seadragoninkmortal.com",
    "http://localhost:3000",
)


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the variable."""


@dataclass(frozen=True)
class Backend:
    """One Ollama server and how many generations it may run at once."""

    url: str
    slots: int


@dataclass(frozen=True)
class Settings:
    """The whole configuration of one gateway process."""

    database_url: str
    secret_key: str = field(repr=False)
    instance_dir: Path
    redis_url: str | None = None
    backends: tuple[Backend, ...] = (Backend("http://127.0.0.1:11434", 1),)
    ollama_urls_set: bool = False
    max_concurrent: int = 1
    max_queue: int = 512
    queue_timeout: float = 600.0
    aging_per_minute: float = 0.1
    direct_priority: int = 1
    webchat_priority: int = 3
    cors_origins: tuple[str, ...] = DEFAULT_CORS_ORIGINS
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8080
    connect_timeout: float = 5.0
    first_byte_timeout: float = 300.0
    idle_timeout: float = 120.0
    max_body: int = 16 * 1024 * 1024
    body_timeout: float = 60.0  # seconds a request body may take to arrive whole (then 408)
    early_headers: bool = True
    metrics_token: str | None = field(default=None, repr=False)
    admin_user: str = "admin"
    admin_password: str | None = field(default=None, repr=False)
    access_token_ttl: int = 12 * 3600
    https: bool = False
    cloud_models: str = "off"  # off | admin | on: who may use Ollama's *-cloud models
    fair_share: float = 0.5  # priority points per request of the same identity already in
    model_affinity: float = 0.5  # points of slack to prefer a model the backend has loaded
    affinity_max_delay: float = 60.0  # seconds a request may be passed over for affinity
    shutdown_grace: float = 30.0  # seconds active streams may finish after SIGTERM
    webchat_rpm: int | None = None  # default limits of web-chat users (None: no limit)
    webchat_daily_tokens: int | None = None
    public_url: str | None = None  # external base URL for every absolute link printed
    log_retention_days: int = 90
    refusal_log_max_ips: int = 1000  # client IPs whose refusals are tracked per minute (refusal_log.py)
    access_log: str = "text"  # text | json | off
    head_timeout: float = 10.0  # seconds a connection may take to send a whole request head
    keepalive_timeout: float = 120.0  # seconds an idle keep-alive connection stays open
    max_head_size: int = 64 * 1024  # bytes of request line + headers, then 431
    max_connections: int = 8192  # open client connections, then 503 at accept
    listen_backlog: int = 4096  # connections the kernel queues before the server accepts them
    health_interval: float = 5.0  # seconds between backend health checks
    health_timeout: float = 3.0  # seconds a health check may take (at most the interval)
    health_failures: int = 2  # failed checks in a row that take a backend out of rotation
    upstream_keepalive_expiry: float = 4.0  # seconds an idle connection to a backend is kept for reuse
    max_pending_per_ip: int = 64  # connections of one IP without a complete head, then 429
    max_idle_per_ip: int = 64  # one IP's idle kept-alive connections without a credential
    pending_grace: float = 1.0  # seconds without a complete head before a connection counts as pending
    end_user_max_length: int = 128  # characters of an end-user header's value, then 400
    user_max_keys: int = 5  # active personal API keys per user (docs/contract.md §14), then 409
    user_key_priority: int = 5  # base priority of a personal API key's requests
    password_reset_hours: int = 24  # how long an admin's password-reset link stays usable
    daily_tokens_reserve: int = 1024  # tokens an in-flight request naming no limit holds (§16)
    fair_share_seconds: float = 10.0  # GPU seconds worth one fair-share step; 0 = off (§13)
    fair_share_window: float = 300.0  # seconds of GPU time counted for fair share (§13)
    webchat_daily_gpu_seconds: int | None = None  # default GPU-time budget of users (§13)
    load_options: str = "client"  # client | server: Runner options of models without a profile (§12)
    keep_alive_min: str | float | None = None  # clamp of keep_alive for models without a profile
    keep_alive_max: str | float | None = None
    sticky_max_delay: float = 10.0  # seconds a conversation's turn waits for its own backend (§12)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every ``SEADRAGON_*`` variable."""
        env = _Env(os.environ if environ is None else environ)
        instance_dir = Path(env.str("INSTANCE_DIR", str(ROOT / "instance")))
        max_concurrent = env.int("MAX_CONCURRENT", 1, minimum=1, maximum=1024)
        raw_urls = env.str("OLLAMA_URLS", "")
        backends = parse_backends(raw_urls or "http://127.0.0.1:11434", max_concurrent)
        return cls(
            database_url=_database_url(env.str("DATABASE_URL", ""), instance_dir),
            secret_key=env.str("SECRET_KEY", "") or _instance_secret(instance_dir),
            instance_dir=instance_dir,
            redis_url=_redis_url(env.str("REDIS_URL", "")),
            backends=backends,
            ollama_urls_set=bool(raw_urls),
            max_concurrent=max_concurrent,
            max_queue=env.int("MAX_QUEUE", 512, minimum=0, maximum=10_000_000),
            queue_timeout=env.float("QUEUE_TIMEOUT", 600.0, minimum=0.001),
            aging_per_minute=env.float("AGING_PER_MINUTE", 0.1, minimum=0.0),
            direct_priority=env.int("DIRECT_PRIORITY", 1, minimum=0, maximum=100),
            webchat_priority=env.int("WEBCHAT_PRIORITY", 3, minimum=0, maximum=100),
            cors_origins=_origins(env.str("CORS_ORIGINS", ",".join(DEFAULT_CORS_ORIGINS))),
            trusted_proxies=_networks(env.str("TRUSTED_PROXIES", "")),
            host=env.str("HOST", "127.0.0.1") or "127.0.0.1",
            port=env.int("PORT", 8080, minimum=0, maximum=65535),
            connect_timeout=env.float("CONNECT_TIMEOUT", 5.0, minimum=0.001),
            first_byte_timeout=env.float("FIRST_BYTE_TIMEOUT", 300.0, minimum=0.001),
            idle_timeout=env.float("IDLE_TIMEOUT", 120.0, minimum=0.001),
            max_body=env.size("MAX_BODY", 16 * 1024 * 1024),
            body_timeout=env.float("BODY_TIMEOUT", 60.0, minimum=0.001),
            early_headers=env.bool("EARLY_HEADERS", True),
            metrics_token=env.str("METRICS_TOKEN", "") or None,
            admin_user=env.str("ADMIN_USER", "admin") or "admin",
            admin_password=env.str("ADMIN_PASSWORD", "") or None,
            access_token_ttl=env.int("ACCESS_TOKEN_TTL", 12 * 3600, minimum=60, maximum=90 * 86400),
            https=env.bool("HTTPS", False),
            cloud_models=env.choice("CLOUD_MODELS", "off", ("off", "admin", "on")),
            fair_share=env.float("FAIR_SHARE", 0.5, minimum=0.0),
            model_affinity=env.float("MODEL_AFFINITY", 0.5, minimum=0.0),
            affinity_max_delay=env.float("AFFINITY_MAX_DELAY", 60.0, minimum=0.0),
            shutdown_grace=env.float("SHUTDOWN_GRACE", 30.0, minimum=0.0),
            webchat_rpm=env.optional_int("WEBCHAT_RPM", minimum=1, maximum=1_000_000),
            webchat_daily_tokens=env.optional_int("WEBCHAT_DAILY_TOKENS", minimum=1, maximum=10**12),
            public_url=_public_url(env.str("PUBLIC_URL", "")),
            log_retention_days=env.int("LOG_RETENTION_DAYS", 90, minimum=1, maximum=36_500),
            refusal_log_max_ips=env.int("REFUSAL_LOG_MAX_IPS", 1000, minimum=1, maximum=1_000_000),
            access_log=env.choice("ACCESS_LOG", "text", ("text", "json", "off")),
            head_timeout=env.float("HEAD_TIMEOUT", 10.0, minimum=0.001),
            keepalive_timeout=env.float("KEEPALIVE_TIMEOUT", 120.0, minimum=0.001),
            max_head_size=env.size("MAX_HEAD_SIZE", 64 * 1024),
            max_connections=env.int("MAX_CONNECTIONS", 8192, minimum=1, maximum=1_000_000),
            listen_backlog=env.int("LISTEN_BACKLOG", 4096, minimum=1, maximum=65_535),
            health_interval=env.float("HEALTH_INTERVAL", 5.0, minimum=0.001),
            health_timeout=env.float("HEALTH_TIMEOUT", 3.0, minimum=0.001),
            health_failures=env.int("HEALTH_FAILURES", 2, minimum=1, maximum=100),
            upstream_keepalive_expiry=env.float("UPSTREAM_KEEPALIVE_EXPIRY", 4.0, minimum=0.0),
            max_pending_per_ip=env.int("MAX_PENDING_PER_IP", 64, minimum=1, maximum=1_000_000),
            max_idle_per_ip=env.int("MAX_IDLE_PER_IP", 64, minimum=1, maximum=1_000_000),
            pending_grace=env.float("PENDING_GRACE", 1.0, minimum=0.0),
            # At most the request log's end_user column (200).
            end_user_max_length=env.int("END_USER_MAX_LENGTH", 128, minimum=1, maximum=200),
            user_max_keys=env.int("USER_MAX_KEYS", 5, minimum=0, maximum=1000),
            user_key_priority=env.int("USER_KEY_PRIORITY", 5, minimum=0, maximum=100),
            password_reset_hours=env.int("PASSWORD_RESET_HOURS", 24, minimum=1, maximum=720),
            daily_tokens_reserve=env.int("DAILY_TOKENS_RESERVE", 1024, minimum=0, maximum=10**9),
            fair_share_seconds=env.float("FAIR_SHARE_SECONDS", 10.0, minimum=0.0),
            fair_share_window=env.float("FAIR_SHARE_WINDOW", 300.0, minimum=1.0),
            webchat_daily_gpu_seconds=env.optional_int("WEBCHAT_DAILY_GPU_SECONDS", minimum=1, maximum=10**9),
            load_options=env.choice("LOAD_OPTIONS", "client", ("client", "server")),
            keep_alive_min=env.duration("KEEP_ALIVE_MIN"),
            keep_alive_max=env.duration("KEEP_ALIVE_MAX"),
            sticky_max_delay=env.float("STICKY_MAX_DELAY", 10.0, minimum=0.0),
        )


class _Env:
    """Typed getters over a mapping; each error names ``SEADRAGON_<NAME>``."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def str(self, name: str, default: str) -> str:
        value = self.environ.get(PREFIX + name)
        if value is None:
            value = self._from_file(name)
        return default if value is None else value.strip()

    def _from_file(self, name: str) -> str | None:
        # Secrets may come from a file (Docker/Kubernetes secrets): NAME_FILE.
        path = self.environ.get(PREFIX + name + "_FILE")
        if not path:
            return None
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{PREFIX}{name}_FILE: cannot read {path}: {exc.strerror}") from exc

    def int(self, name: str, default: int, *, minimum: int, maximum: int) -> int:
        raw = self.str(name, "")
        if raw == "":
            return default
        if not re.fullmatch(r"[+-]?\d+", raw):
            raise ConfigError(f"{PREFIX}{name}: expected a whole number, got {raw!r}")
        value = int(raw)
        if not minimum <= value <= maximum:
            raise ConfigError(f"{PREFIX}{name}: must be between {minimum} and {maximum}, got {value}")
        return value

    def optional_int(self, name: str, *, minimum: int, maximum: int) -> int | None:
        """A whole number, or None when the variable is unset or empty (no limit)."""
        if self.str(name, "") == "":
            return None
        return self.int(name, minimum, minimum=minimum, maximum=maximum)

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        """One of ``allowed`` (case-insensitive)."""
        raw = self.str(name, "").lower()
        if raw == "":
            return default
        if raw not in allowed:
            raise ConfigError(f"{PREFIX}{name}: expected one of {', '.join(allowed)}, got {raw!r}")
        return raw

    def float(self, name: str, default: float, *, minimum: float) -> float:
        raw = self.str(name, "")
        if raw == "":
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{PREFIX}{name}: expected a number, got {raw!r}") from None
        if value != value or value in (float("inf"), float("-inf")) or value < minimum:
            raise ConfigError(f"{PREFIX}{name}: must be a number of at least {minimum}, got {raw!r}")
        return value

    def duration(self, name: str) -> str | float | None:
        """A keep_alive as Ollama reads it (seconds, or a Go duration like 30m), or None when unset."""
        raw = self.str(name, "")
        if raw == "":
            return None
        try:
            value: str | float = float(raw) if re.fullmatch(r"-?\d+(\.\d+)?", raw) else raw
            parse_keep_alive(value)
        except DurationError:
            raise ConfigError(
                f"{PREFIX}{name}: expected seconds or a duration like 30m or 1h30m, got {raw!r}"
            ) from None
        return int(value) if isinstance(value, float) and value.is_integer() else value

    def bool(self, name: str, default: bool) -> bool:
        raw = self.str(name, "").lower()
        if raw == "":
            return default
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{PREFIX}{name}: expected true or false, got {raw!r}")

    def size(self, name: str, default: int) -> int:
        raw = self.str(name, "")
        if raw == "":
            return default
        match = re.fullmatch(r"(\d+)\s*(B|KiB|MiB|GiB)?", raw)
        if not match:
            raise ConfigError(f"{PREFIX}{name}: expected bytes or a size like 16MiB, got {raw!r}")
        factor = {None: 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}[match.group(2)]
        value = int(match.group(1)) * factor
        if value < 1:
            raise ConfigError(f"{PREFIX}{name}: must be at least 1 byte")
        return value


def parse_backends(raw: str, default_slots: int) -> tuple[Backend, ...]:
    """Parse ``OLLAMA_URLS``: a comma list of ``URL`` or ``URL=N``."""
    backends: list[Backend] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        url, _, slots_raw = item.partition("=")
        url = url.strip().rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{PREFIX}OLLAMA_URLS: {url!r} is not an http(s) URL")
        slots = default_slots
        if slots_raw:
            if not slots_raw.strip().isdigit() or int(slots_raw) < 1:
                raise ConfigError(f"{PREFIX}OLLAMA_URLS: slots for {url} must be a whole number >= 1")
            slots = int(slots_raw)
        if any(b.url == url for b in backends):
            raise ConfigError(f"{PREFIX}OLLAMA_URLS: {url} is listed twice")
        backends.append(Backend(url, slots))
    if not backends:
        raise ConfigError(f"{PREFIX}OLLAMA_URLS: no backend URL given")
    return tuple(backends)


def _database_url(raw: str, instance_dir: Path) -> str:
    if not raw:
        instance_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{instance_dir / 'seadragon.db'}"
    scheme = raw.split(":", 1)[0]
    if scheme.startswith("sqlite"):
        path = raw.split("///", 1)[1] if "///" in raw else ""
        if path and path != ":memory:" and not path.startswith("/"):
            # Relative SQLite paths are taken from the repository root, not the cwd.
            full = ROOT / path
            full.parent.mkdir(parents=True, exist_ok=True)
            return f"sqlite:///{full}"
        return raw
    if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
        rest = raw.split("://", 1)[1] if "://" in raw else ""
        return "postgresql+psycopg://" + rest
    raise ConfigError(f"{PREFIX}DATABASE_URL: unsupported database {scheme!r} (use sqlite or postgresql)")


def _redis_url(raw: str) -> str | None:
    if not raw:
        return None
    if urlsplit(raw).scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"{PREFIX}REDIS_URL: expected redis://host:port/db, got {raw!r}")
    return raw


def _origins(raw: str) -> tuple[str, ...]:
    origins = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        parts = urlsplit(item)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            raise ConfigError(f"{PREFIX}CORS_ORIGINS: {item!r} is not an origin like https://host[:port]")
        origins.append(f"{parts.scheme}://{parts.netloc}".lower())
    return tuple(origins)


def _public_url(raw: str) -> str | None:
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"{PREFIX}PUBLIC_URL: {raw!r} is not a base URL like https://host[/path]")
    return raw.rstrip("/")


def _networks(raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    nets = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            nets.append(normalise_network(item))
        except ValueError:
            raise ConfigError(f"{PREFIX}TRUSTED_PROXIES: {item!r} is not an IP address or CIDR") from None
    return tuple(nets)


def _instance_secret(instance_dir: Path) -> str:
    """Generate the secret key once and keep it in ``instance/secret_key``."""
    path = instance_dir / "secret_key"
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        return _new_instance_secret(instance_dir, path)  # the first start: make one
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)  # a key file left readable by others (older versions, a copy)
    return key


def _new_instance_secret(instance_dir: Path, path: Path) -> str:
    """Write a new secret key to ``path`` (or read the one another process just wrote)."""
    instance_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # Another process won the race; use its key so sessions stay valid.
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key
