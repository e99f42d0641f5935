"""The system under test: the Ollama simulator and, in front of it, the whole gateway (``python asgi.py``)."""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from bench.procs import Service, free_port
from common.bootstrap import prepare_database
from common.db import make_sessionmaker, make_sync_engine
from common.models import AccessToken, APIKey, User, utcnow
from common.security import ACCESS_TOKEN_PREFIX, display_prefix, hash_secret, new_api_key, new_secret
from common.settings import Settings
from simulator.config import SimulatorConfig

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
GATEWAY_SLOTS = 2000  # enough that the queue never limits S1–S5
MAX_QUEUE = 1_000_000
MAX_TOKENS = 10_000_000  # the simulator's upper bound
SIM_LOG_LIMIT = 100  # the simulator keeps a record of each request; the benchmark reads none of it


def sim_config(token_delay_ms: float = 0.0) -> SimulatorConfig:
    """The simulator as the benchmark wants it: no concurrency cap, tokens set per request.

    ``tokens`` is the most it allows; each request then asks for its own
    count with ``options.num_predict``, which passes through the gateway unchanged.
    """
    return SimulatorConfig(
        tokens=MAX_TOKENS, token_delay=token_delay_ms / 1000, num_parallel=0, log_limit=SIM_LOG_LIMIT
    )


@dataclass(frozen=True)
class Target:
    """Where a scenario sends its requests, and which process serves them."""

    name: str  # "direct" or "gateway"
    port: int
    pid: int
    headers: dict[str, str] = field(default_factory=dict)
    host: str = HOST

    def url(self, path: str) -> str:
        """Absolute URL of ``path`` on this target."""
        return f"http://{self.host}:{self.port}{path}"


def simulator_argv(port: int, config: SimulatorConfig) -> list[str]:
    """The command that starts the bundled simulator with ``config``."""
    return [sys.executable, "-m", "simulator", "--host", HOST, "--port", str(port), *config.to_args()]


def start_simulator(workdir: Path, config: SimulatorConfig) -> Service:
    """Start the simulator on a free port and wait until it answers."""
    port = free_port()
    service = Service(
        "simulator",
        simulator_argv(port, config),
        port=port,
        env=_clean_env(),
        cwd=ROOT,
        log_path=workdir / f"simulator-{port}.log",
    )
    return service.start(f"http://{HOST}:{port}/api/version")


def _clean_env() -> dict[str, str]:
    # The harness's own SEADRAGON_* variables (a developer's shell) must not leak into the servers.
    return {k: v for k, v in os.environ.items() if not k.startswith("SEADRAGON_")}


@dataclass
class GatewaySetup:
    """A prepared gateway instance: its environment and the credentials the harness made for it."""

    env: dict[str, str]
    port: int
    keys: dict[int, str]  # priority -> API key
    admin_token: str


def prepare_gateway(workdir: Path, backend_url: str, slots: int, priorities: Sequence[int]) -> GatewaySetup:
    """Migrate a fresh SQLite database and create one API key per priority and an admin access token."""
    port = free_port()
    instance = workdir / f"gateway-{port}"
    env = {
        "SEADRAGON_INSTANCE_DIR": str(instance),
        "SEADRAGON_DATABASE_URL": f"sqlite:///{instance / 'seadragon.db'}",
        "SEADRAGON_SECRET_KEY": secrets.token_urlsafe(32),
        "SEADRAGON_ADMIN_PASSWORD": secrets.token_urlsafe(16),
        "SEADRAGON_OLLAMA_URLS": f"{backend_url}={slots}",
        "SEADRAGON_MAX_QUEUE": str(MAX_QUEUE),
        "SEADRAGON_QUEUE_TIMEOUT": "3600",
        # Q1 holds 10,000 requests open from this one client: more than the default cap of 8,192.
        "SEADRAGON_MAX_CONNECTIONS": "16384",
        "SEADRAGON_ACCESS_LOG": "off",  # a line per request would measure the terminal, not the gateway
        # Q1 counts inversions against the priority order itself; fair share (README "Scheduling")
        # would reorder each key's backlog on purpose, so it is measured by bench/trace.py instead.
        "SEADRAGON_FAIR_SHARE": "0",
        "SEADRAGON_HOST": HOST,
        "SEADRAGON_PORT": str(port),
    }
    settings = Settings.from_env(env)
    prepare_database(settings)
    engine = make_sync_engine(settings.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            keys = {}
            for priority in priorities:
                key = new_api_key()
                session.add(
                    APIKey(
                        name=f"bench priority {priority}",
                        key_hash=hash_secret(key),
                        prefix=display_prefix(key),
                        priority=priority,
                    )
                )
                keys[priority] = key
            admin = session.scalars(sa.select(User).where(User.username == settings.admin_user)).one()
            admin_token = new_secret(ACCESS_TOKEN_PREFIX)
            session.add(
                AccessToken(
                    token_hash=hash_secret(admin_token),
                    user_id=admin.id,
                    session_version=admin.session_version,
                    expires_at=utcnow() + timedelta(days=1),
                )
            )
            session.commit()
    finally:
        engine.dispose()
    return GatewaySetup(env=env, port=port, keys=keys, admin_token=admin_token)


def start_gateway(workdir: Path, setup: GatewaySetup) -> Service:
    """Start ``python asgi.py`` as in production and wait until it answers."""
    service = Service(
        "gateway",
        [sys.executable, "asgi.py"],
        port=setup.port,
        env={**_clean_env(), **setup.env},
        cwd=ROOT,
        log_path=workdir / f"gateway-{setup.port}.log",
    )
    return service.start(f"http://{HOST}:{setup.port}/")


@contextlib.contextmanager
def gateway_on_simulator(
    workdir: Path, slots: int, priorities: Sequence[int]
) -> Iterator[tuple[GatewaySetup, Service]]:
    """A simulator and the gateway in front of it with ``slots`` slots; both stopped afterwards."""
    simulator = start_simulator(workdir, sim_config())
    try:
        setup = prepare_gateway(workdir, f"http://{HOST}:{simulator.port}", slots, priorities)
        gateway = start_gateway(workdir, setup)
        try:
            yield setup, gateway
        finally:
            gateway.stop()
    finally:
        simulator.stop()
