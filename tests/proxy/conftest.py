"""Fixtures for the gateway tests: a shared simulator, accounts, and gateways served for real."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from proxy_app import create_app
from tests.conftest import settings_env
from tests.live import LiveServer
from tests.proxy import live_gateway as door
from tests.proxy.door_sockets import OPEN
from tests.proxy.fake_ollama import FakeOllama
from tests.proxy.scheduling import tags_handler
from tests.proxy.support import (
    Accounts,
    AdminApp,
    GatewayServer,
)


@pytest.fixture(scope="session")
def sim_server():
    """One Ollama simulator for the whole session."""
    from simulator import SimulatorConfig, serve_in_thread

    # Few tokens and no pacing keep the suite fast; tests that need pacing ask per request (X-Sim-Delay).
    handle = serve_in_thread(SimulatorConfig(tokens=5, token_delay=0.0))
    yield handle
    handle.stop()


@pytest.fixture
def sim(sim_server):
    """The shared simulator with an empty record and its start-up configuration."""
    sim_server.reset()
    return sim_server


@pytest.fixture
def gw_settings(settings_factory, sim):
    """Settings factory for a gateway in front of the simulator (one slot, loopback a trusted proxy)."""

    def make(**overrides):
        values = {"OLLAMA_URLS": f"{sim.url}=1", "TRUSTED_PROXIES": "127.0.0.1", **overrides}
        return settings_factory(**values)

    return make


@pytest.fixture
def fake_ollama() -> FakeOllama:
    """An in-memory Ollama that records what reaches it."""
    return FakeOllama()


@pytest.fixture
async def make_gateway(fake_ollama) -> AsyncIterator[Callable]:
    """Start a gateway on the in-memory Ollama (lifespan included); returns its Quart test client."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(settings, test_config: dict | None = None, transport=None):
            transport = transport or httpx.MockTransport(fake_ollama)
            app = create_app(test_config, settings=settings, transport=transport)
            test_app = await stack.enter_async_context(app.test_app())
            return test_app.test_client()

        yield make


@pytest.fixture
def accounts(settings_factory) -> Iterator[Callable[..., Accounts]]:
    """Accounts on a settings object's database."""
    made: list[Accounts] = []

    def make(settings) -> Accounts:
        made.append(Accounts(settings))
        return made[-1]

    yield make
    for item in made:
        item.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., GatewayServer]]:
    """Start a real gateway for a settings object; stopped after the test."""
    servers: list[GatewayServer] = []

    def start(settings, test_config: dict | None = None) -> GatewayServer:
        servers.append(GatewayServer(settings, test_config).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def gateway(gw_settings, accounts, serve):
    """Start a one-slot gateway on the shared simulator; 10.0.0.5 is whitelisted."""

    def make(**overrides):
        settings = gw_settings(**overrides)
        accounts(settings).whitelist("10.0.0.5")
        return serve(settings)

    return make


@pytest.fixture
def admin_app() -> Callable[..., AdminApp]:
    """The real admin app on a settings object's database."""
    return AdminApp


@pytest.fixture(scope="module")
def door_server(tmp_path_factory, sim_server) -> Iterator[LiveServer]:
    """The real gateway with small door limits."""
    env = settings_env(
        tmp_path_factory.mktemp("door"),
        admin_password=door.ADMIN_PASSWORD,
        ollama_urls=f"{sim_server.url}=4",
        head_timeout=door.HEAD_TIMEOUT,
        keepalive_timeout=door.KEEPALIVE_TIMEOUT,
        max_head_size=door.MAX_HEAD,
        max_connections=door.MAX_CONNECTIONS,
        max_pending_per_ip=door.PENDING_PER_IP,
        pending_grace=door.PENDING_GRACE,
        max_idle_per_ip=door.MAX_IDLE_PER_IP,
        body_timeout=door.BODY_TIMEOUT,
    )
    live = LiveServer(env).start(timeout=60)
    yield live
    live.stop()


@pytest.fixture(scope="module")
def door_key(door_server) -> str:
    """A key made through the admin API."""
    with httpx.Client(base_url=door_server.url, timeout=30) as client:
        token = client.post("/auth/token", json={"username": "admin", "password": door.ADMIN_PASSWORD}).json()
        created = client.post(
            "/api/admin/apikeys",
            json={"name": "door", "priority": 5},
            headers={"Authorization": f"Bearer {token['access_token']}"},
        )
        assert created.status_code == 201, created.text
        return created.json()["key"]


@pytest.fixture
def agents(gw_settings, accounts, serve):
    """A gateway before the simulator (``whitelist``: an IP to whitelist); returns (server, key, settings)."""

    def start(whitelist: str | None = None, **overrides):
        settings = gw_settings(**overrides)
        made = accounts(settings)
        key = made.key(priority=2)
        if whitelist:
            made.whitelist(whitelist)
        return serve(settings), key, settings

    return start


@pytest.fixture(scope="session")
def agent_upstream():
    """A recording upstream for blob uploads under any digest form (tests/proxy/agent_upstream.py)."""
    from tests.proxy.agent_upstream import UpstreamServer

    server = UpstreamServer().start()
    yield server
    server.stop()


@pytest.fixture
async def client():
    """An httpx client whose backends are all down unless a test says otherwise."""
    async with httpx.AsyncClient(transport=httpx.MockTransport(tags_handler({}))) as c:
        yield c


@pytest.fixture
def pool():
    """Threads for requests that run while the test watches."""
    with ThreadPoolExecutor(max_workers=8) as executor:
        yield executor


@pytest.fixture
def world(gw_settings, accounts, serve, admin_app):
    """A one-slot gateway, a key (priority 2), an admin (Bearer token and signed-in session) and a user."""

    def make(**overrides):
        settings = gw_settings(**overrides)
        db = accounts(settings)
        db.whitelist("10.0.0.5")
        key = db.key(priority=2)
        db.user("root", admin=True)
        db.user("bob")
        admin = admin_app(settings)
        token = admin.access_token("root")
        return serve(settings), db, key, admin, {"Authorization": f"Bearer {token}"}

    return make


@pytest.fixture(autouse=True)
def close_sockets() -> Iterator[None]:
    """Every socket a test opened is closed after it."""
    yield
    while OPEN:
        OPEN.pop().close()
