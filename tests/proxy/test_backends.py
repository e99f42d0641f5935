"""The backend pool: health checks against /api/tags, model routing, rejoining."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from common.policies import normalise_model_name
from common.settings import Backend
from proxy_app.backends import RECENT_MODELS, BackendPool, BackendState, holds
from proxy_app.transport import LeanTransport
from tests.proxy.scheduling import tags_handler

BACKENDS = [Backend("http://gpu1:11434", 2), Backend("http://gpu2:11434", 1)]


@pytest.fixture
def hosts() -> dict[str, list[str] | None]:
    """What each host answers: a model list, or None for 'down'."""
    return {"gpu1": ["llama3.2:latest", "qwen3:8b"], "gpu2": ["nomic-embed-text:latest"]}


@pytest.fixture
async def pool(hosts):
    """A pool over gpu1 and gpu2, checked through a mock transport."""
    async with httpx.AsyncClient(transport=httpx.MockTransport(tags_handler(hosts))) as client:
        pool = BackendPool(BACKENDS, client, interval=0.02)
        yield pool
        await pool.close()


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("llama3.2", "llama3.2:latest"),
        ("Llama3.2:Latest", "llama3.2:latest"),
        ("qwen3:8b", "qwen3:8b"),
        ("registry.local:5000/team/model", "registry.local:5000/team/model:latest"),
        ("registry.local:5000/team/model:q4", "registry.local:5000/team/model:q4"),
        ("registry.ollama.ai/library/llama3.2", "llama3.2:latest"),
        ("library/Llama3.2:latest", "llama3.2:latest"),
    ],
)
def test_model_names_with_and_without_latest_are_one_model(name, key):
    assert normalise_model_name(name) == key


def test_a_backend_with_unknown_models_serves_any_model():
    backend = BackendState("http://x:1", 1)
    assert backend.serves("anything") and backend.serves(None)
    backend.models = frozenset({"llama3.2:latest"})
    assert backend.serves("llama3.2") and backend.serves("llama3.2:latest") and backend.serves(None)
    assert not backend.serves("llama3.2:1b")
    assert backend.serves("registry.ollama.ai/library/llama3.2") and backend.serves("library/LLAMA3.2:latest")


async def test_start_checks_every_backend_and_learns_its_models(pool):
    assert all(b.healthy and b.models is None for b in pool.backends)
    await pool.start()
    gpu1, gpu2 = pool.backends
    assert gpu1.healthy and gpu1.models == frozenset({"llama3.2:latest", "qwen3:8b"})
    assert gpu2.healthy and gpu2.models == frozenset({"nomic-embed-text:latest"})
    assert pool.candidates("nomic-embed-text") == [gpu2]
    assert pool.candidates("llama3.2") == [gpu1]
    assert pool.candidates(None) == [gpu1, gpu2]


async def test_a_backend_that_does_not_answer_is_marked_down(pool, hosts):
    hosts["gpu2"] = None
    await pool.check_all()
    gpu1, gpu2 = pool.backends
    assert gpu1.healthy and not gpu2.healthy
    assert "ConnectError" in gpu2.last_error
    # Its model is listed nowhere healthy now, so any healthy backend may answer (Ollama's own 404).
    assert pool.candidates("nomic-embed-text") == [gpu1]


async def test_a_backend_answering_an_error_status_is_marked_down():
    handler = lambda request: httpx.Response(500, json={"error": "boom"})  # noqa: E731
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        pool = BackendPool(BACKENDS[:1], client)
        await pool.check_all()
    assert not pool.backends[0].healthy
    assert pool.backends[0].last_error == "/api/tags answered 500"
    assert pool.candidates(None) == []


@pytest.mark.parametrize("transport", [LeanTransport(), None], ids=["lean", "httpcore"])
async def test_a_backend_that_hangs_is_marked_down_after_the_check_timeout(transport):
    finished = asyncio.Event()

    async def never_answer(reader, writer):
        await reader.read(1024)
        await finished.wait()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(transport=transport) as client:
            pool = BackendPool([Backend(f"http://127.0.0.1:{port}", 1)], client, timeout=0.2)
            await asyncio.wait_for(pool.check_all(), 2)
    finally:
        finished.set()
        server.close()
        await server.wait_closed()
    assert not pool.backends[0].healthy
    assert "ReadTimeout" in pool.backends[0].last_error


async def test_an_answer_without_a_model_list_leaves_the_models_unknown():
    handler = lambda request: httpx.Response(200, text="not json")  # noqa: E731
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        pool = BackendPool(BACKENDS[:1], client)
        await pool.check_all()
    assert pool.backends[0].healthy and pool.backends[0].models is None


async def test_a_failed_backend_rejoins_when_the_health_loop_reaches_it(pool, hosts):
    joined = []
    pool.on_change(lambda: joined.append([b.healthy for b in pool.backends]))
    await pool.start()
    gpu2 = pool.backends[1]
    pool.mark_failed(gpu2, "ConnectError: connection refused")
    assert not gpu2.healthy and pool.candidates("nomic-embed-text") == [pool.backends[0]]
    joined.clear()
    for _ in range(100):
        await asyncio.sleep(0.01)
        if gpu2.healthy:
            break
    assert gpu2.healthy and gpu2.last_error is None
    assert joined and joined[0] == [True, True], "listeners hear that capacity came back"


@pytest.mark.costly  # waits for a health check
async def test_a_backend_down_at_start_is_asked_again_within_a_second_not_an_interval():
    answers = iter([httpx.Response(503), httpx.Response(200, json={"models": [{"name": "llama3.2:latest"}]})])
    asked = []

    def handler(request):
        asked.append(asyncio.get_running_loop().time())
        return next(answers, httpx.Response(200, json={"models": []}))

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        pool = BackendPool(BACKENDS[:1], client, interval=30)
        await pool.start()
        assert not pool.backends[0].healthy
        try:
            async with asyncio.timeout(3):
                while not pool.backends[0].healthy:
                    await asyncio.sleep(0.02)
        finally:
            await pool.close()
    assert pool.backends[0].models == frozenset({"llama3.2:latest"})
    assert 0.4 <= asked[1] - asked[0] <= 2.0  # RECHECK_FIRST (0.5 s), not the 30 s interval


@pytest.mark.costly  # waits for health checks
async def test_while_all_backends_are_healthy_the_interval_is_kept(pool, hosts):
    asked = []
    pool.on_change(lambda: None)
    original = pool._check

    async def counting(backend):
        asked.append(backend.url)
        return await original(backend)

    pool.interval = 0.2
    pool._check = counting
    await pool.start()
    await asyncio.sleep(0.5)
    rounds = len(asked) // len(pool.backends)
    assert 2 <= rounds <= 4  # the first check, then one every 0.2 s


async def test_the_health_loop_stops_on_close(pool, hosts):
    await pool.start()
    await pool.close()
    hosts["gpu1"] = ["other:latest"]
    await asyncio.sleep(0.1)
    assert pool.backends[0].models == frozenset({"llama3.2:latest", "qwen3:8b"})


async def test_snapshot_shows_each_backend(pool):
    await pool.start()
    pool.backends[0].in_use = 1
    assert pool.snapshot() == [
        {
            "url": "http://gpu1:11434",
            "slots": 2,
            "in_use": 1,
            "healthy": True,
            "models": ["llama3.2:latest", "qwen3:8b"],
            "loaded": [],
        },
        {
            "url": "http://gpu2:11434",
            "slots": 1,
            "in_use": 0,
            "healthy": True,
            "models": ["nomic-embed-text:latest"],
            "loaded": [],
        },
    ]


@pytest.mark.parametrize(
    ("model", "given", "listed", "capacity", "expected"),
    [
        ("small", ["small"], {"big"}, 1, True),  # the newest dispatch wins
        ("big", ["small"], {"big"}, 1, False),  # /api/ps from before the swap is stale
        ("big", ["small", "big"], {"big"}, 1, False),  # given before small: evicted since
        ("big", [], {"big"}, 1, True),  # loaded before the gateway started
        ("big", [], set(), 1, False),
        ("a", ["c", "a"], {"a", "b"}, 2, True),  # two fit: the last two given
        ("b", ["c", "a"], {"a", "b"}, 2, False),  # listed, never given, but two were given since
        ("b", ["c"], {"a", "b"}, 2, True),  # listed, never given, room for one more
        ("a", ["c", "b", "a"], {"a", "b"}, 2, False),  # third most recent of two
    ],
)
def test_holds_believes_dispatches_over_a_stale_api_ps(model, given, listed, capacity, expected):
    assert holds(model, given, listed, capacity) is expected


def test_capacity_is_the_most_models_api_ps_ever_listed_and_dispatch_order_is_kept():
    backend = BackendState("http://b0:11434", 1)
    assert backend.capacity == 1
    backend.saw_loaded(frozenset({"a:latest", "b:latest"}))
    backend.saw_loaded(frozenset({"a:latest"}))
    backend.saw_loaded(None)
    assert backend.capacity == 2
    for model in ["a", "b", "c", "b", "", None]:
        backend.given(model)
    assert backend.recent == ["b:latest", "c:latest", "a:latest"]
    assert backend.has_loaded("b") and backend.has_loaded("c:latest") and not backend.has_loaded("a")
    for index in range(40):
        backend.given(f"m{index}")
    assert len(backend.recent) == RECENT_MODELS


@pytest.mark.costly  # waits for the recheck after a failed health check (0.5 s)
async def test_one_failed_health_check_keeps_a_backend_that_answered_before_in_rotation():
    """HEALTH_FAILURES=2: a check that times out is asked again within a second; two in a row take it out."""
    answers = ["ok", "timeout", "ok", "timeout", "timeout", "ok"]
    asked: list[float] = []

    def handler(request):
        if request.url.path == "/api/ps":
            return httpx.Response(200, json={"models": []})
        asked.append(asyncio.get_running_loop().time())
        if (answers.pop(0) if answers else "ok") == "timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(200, json={"models": [{"name": "llama3.2:latest"}]})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        pool = BackendPool(BACKENDS[:1], client, interval=30, failures=2)
        backend = pool.backends[0]
        await pool.check_all()
        await pool.check_all()  # one timeout: still serving
        assert backend.healthy and backend.failed_checks == 1 and backend.last_error is None
        await pool.check_all()
        assert backend.healthy and backend.failed_checks == 0
        await pool.check_all()
        await pool.check_all()  # the second in a row
        assert not backend.healthy and backend.last_error == "ReadTimeout: timed out"
        await pool.check_all()
        assert backend.healthy
        answers[:] = ["timeout", "ok"]
        await pool.start()  # the loop: after one failed check the next comes at RECHECK_FIRST, not 30 s
        try:
            async with asyncio.timeout(3):
                while len(asked) < 8:
                    await asyncio.sleep(0.02)
        finally:
            await pool.close()
    assert backend.healthy and 0.4 <= asked[7] - asked[6] <= 2.0


async def test_a_backend_that_never_answered_leaves_at_its_first_failed_check():
    def handler(request):
        raise httpx.ReadTimeout("timed out", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        pool = BackendPool(BACKENDS[:1], client, interval=30, failures=3)
        await pool.check_all()
    assert not pool.backends[0].healthy


async def test_a_refused_connection_takes_a_backend_out_at_once_whatever_health_failures_says():
    refuse = False

    def handler(request):
        if refuse:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json={"models": []})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        pool = BackendPool(BACKENDS[:1], client, interval=30, failures=3)
        await pool.check_all()
        assert pool.backends[0].healthy
        refuse = True
        await pool.check_all()
    assert not pool.backends[0].healthy and pool.backends[0].last_error == "ConnectError: connection refused"
