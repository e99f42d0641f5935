"""The VRAM model: load time before the first token, LRU eviction at ``max_loaded``, /api/ps, swap counts."""

from __future__ import annotations

import calendar
import concurrent.futures
import time

import httpx
import ollama
import pytest

from simulator import ConfigError, SimulatorConfig, ThreadHandle
from simulator.__main__ import parse_args
from simulator.vram import FOREVER, keep_alive_seconds
from tests.simulator.helpers import QUESTION

LOAD = 0.4
AT_LEAST = LOAD * 0.95  # event-loop timers may fire a hair early against a monotonic clock


def timed_chat(client: ollama.Client, model: str) -> tuple[float, ollama.ChatResponse]:
    """Seconds a non-streamed chat took, and its answer."""
    started = time.monotonic()
    answer = client.chat(model=model, messages=QUESTION, stream=False)
    return time.monotonic() - started, answer


@pytest.mark.costly  # waits out load times
def test_first_request_pays_the_load_time_and_reports_it(
    sim: ThreadHandle, ollama_client: ollama.Client
) -> None:
    sim.configure(load_time=LOAD)
    cold, answer = timed_chat(ollama_client, "llama3.2")
    _, again = timed_chat(ollama_client, "llama3.2")
    assert cold >= AT_LEAST and answer.load_duration >= AT_LEAST * 1e9
    assert again.load_duration < LOAD * 1e9  # loaded already: only the scheduling is counted
    assert sim.stats()["vram"]["loads"] == 1


@pytest.mark.costly  # waits out load times
def test_lru_model_is_evicted_when_max_loaded_are_in(sim: ThreadHandle, ollama_client: ollama.Client) -> None:
    sim.configure(max_loaded=2, load_time=LOAD)
    for model in ("llama3.2", "qwen2.5-coder:7b", "llama3.2"):
        timed_chat(ollama_client, model)
    ollama_client.pull("phi3:mini")  # a third model
    third, _ = timed_chat(ollama_client, "phi3:mini")
    assert third >= AT_LEAST
    assert {m.model for m in ollama_client.ps().models} == {"llama3.2:latest", "phi3:mini"}
    back, _ = timed_chat(ollama_client, "qwen2.5-coder:7b")  # evicted: it loads again
    assert back >= AT_LEAST
    vram = sim.stats()["vram"]
    assert vram["loads"] == 4 and vram["evictions"] == 2
    assert vram["loaded"] == ["phi3:mini", "qwen2.5-coder:7b"]  # least recently used first


@pytest.mark.costly  # waits out load times
def test_concurrent_requests_share_one_load(sim: ThreadHandle) -> None:
    sim.configure(load_time=LOAD)
    body = {"model": "llama3.2", "messages": QUESTION, "stream": False}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: httpx.post(f"{sim.url}/api/chat", json=body, timeout=30), range(4)))
    assert all(a.status_code == 200 for a in answers)
    assert sim.stats()["vram"]["loads"] == 1


def test_ps_lists_loaded_models_as_ollama_does(ollama_client: ollama.Client, http: httpx.Client) -> None:
    ollama_client.chat(model="llama3.2", messages=QUESTION, keep_alive="10m")
    ollama_client.chat(model="qwen2.5-coder:7b", messages=QUESTION, keep_alive=60)
    raw = http.get("/api/ps").json()["models"]
    assert [m["name"] for m in raw] == ["llama3.2:latest", "qwen2.5-coder:7b"]  # longest keep-alive first
    assert list(raw[0]) == [
        "name",
        "model",
        "size",
        "digest",
        "details",
        "expires_at",
        "size_vram",
        "context_length",
    ]
    running = ollama_client.ps().models
    assert running[0].size_vram == running[0].size > 0 and running[0].details.family == "llama"
    ollama_client.chat(model="llama3.2", messages=[], keep_alive=0)  # unload
    assert [m.model for m in ollama_client.ps().models] == ["qwen2.5-coder:7b"]


@pytest.mark.costly  # waits out a load
def test_ps_lists_a_model_while_it_loads_as_ollama_does(sim: ThreadHandle, http: httpx.Client) -> None:
    """Ollama's scheduler lists a runner in /api/ps from the moment its load starts (server/sched.go)."""
    sim.configure(load_time=LOAD * 2)
    body = {"model": "llama3.2", "messages": QUESTION, "stream": False, "keep_alive": "10m"}
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        answer = pool.submit(httpx.post, f"{sim.url}/api/chat", json=body, timeout=30)
        deadline = time.monotonic() + LOAD
        while sim.stats()["vram"]["loading"] != ["llama3.2:latest"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sim.stats()["vram"]["loading"] == ["llama3.2:latest"], "the load had not begun"
        during = http.get("/api/ps").json()["models"]
        assert answer.result().status_code == 200
    assert [m["name"] for m in during] == ["llama3.2:latest"]
    left = calendar.timegm(time.strptime(during[0]["expires_at"][:19], "%Y-%m-%dT%H:%M:%S")) - time.time()
    assert 500 < left <= 601  # now plus its keep-alive (10 minutes)
    assert [m["name"] for m in http.get("/api/ps").json()["models"]] == ["llama3.2:latest"]


def test_cloud_models_are_listed_remote_and_never_loaded(
    sim: ThreadHandle, ollama_client: ollama.Client
) -> None:
    sim.configure(models=["llama3.2:latest", "gpt-oss:120b-cloud"], load_time=LOAD)
    (cloud,) = [m for m in ollama_client.list().models if m.model == "gpt-oss:120b-cloud"]
    raw = httpx.get(f"{sim.url}/api/tags").json()["models"][1]
    assert raw["remote_model"] == "gpt-oss:120b" and raw["remote_host"] == "https://ollama.com:443"
    assert cloud.size == 384
    _, answer = timed_chat(ollama_client, "gpt-oss:120b-cloud")
    assert answer.load_duration < LOAD * 1e9 and len(answer.message.content.split()) == 5
    assert ollama_client.ps().models == [] and sim.stats()["vram"]["loads"] == 0


def test_options_come_from_flags_and_environment() -> None:
    config, _ = parse_args(["--max-loaded", "2", "--load-time", "1.5"])
    assert (config.max_loaded, config.load_time) == (2, 1.5)
    from_env = SimulatorConfig.from_env({"SEADRAGON_SIM_MAX_LOADED": "3", "SEADRAGON_SIM_LOAD_TIME": "0.25"})
    assert (from_env.max_loaded, from_env.load_time) == (3, 0.25)
    with pytest.raises(ConfigError, match="load_time"):
        SimulatorConfig(load_time=-1)
    with pytest.raises(ConfigError, match="max_loaded"):
        SimulatorConfig(max_loaded=-1)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, 300.0),
        (30, 30.0),
        ("10m", 600.0),
        ("1h", 3600.0),
        ("500ms", 0.5),
        (-1, FOREVER),
        ("junk", 300.0),
    ],
)
def test_keep_alive_reads_seconds_and_go_durations(value: object, seconds: float) -> None:
    assert keep_alive_seconds(value) == seconds
