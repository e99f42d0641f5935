"""Starting the simulator: configuration, the command line, in a thread, in a child process."""

from __future__ import annotations

import subprocess
import sys

import httpx
import ollama
import pytest

from simulator import ConfigError, SimulatorConfig, serve_in_subprocess, serve_in_thread
from simulator.__main__ import parse_args
from simulator.server import ROOT
from tests.simulator.helpers import QUESTION, chat_body


def test_config_reads_prefixed_environment_variables() -> None:
    env = {"SEADRAGON_SIM_TOKENS": "7", "SEADRAGON_SIM_MODELS": "a:1b, b", "SEADRAGON_SIM_TOKEN_DELAY": "0"}
    config = SimulatorConfig.from_env(env)
    assert (config.tokens, config.models, config.token_delay) == (7, ("a:1b", "b"), 0.0)
    with pytest.raises(ConfigError, match="^SEADRAGON_SIM_NUM_PARALLEL: "):
        SimulatorConfig.from_env({"SEADRAGON_SIM_NUM_PARALLEL": "two"})
    with pytest.raises(ConfigError, match="^token_delay: "):
        SimulatorConfig(token_delay=-1)
    with pytest.raises(ConfigError, match="^fault: "):
        SimulatorConfig(fault="status=1000")


def test_command_line_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEADRAGON_SIM_TOKENS", "9")
    monkeypatch.setenv("SEADRAGON_SIM_MAX_QUEUE", "3")
    config, args = parse_args(
        ["--port", "11500", "--tokens", "4", "--models", "x:7b,y", "--num-parallel", "2"]
    )
    assert (config.port, config.tokens, config.max_queue, config.num_parallel) == (11500, 4, 3, 2)
    assert config.models == ("x:7b", "y") and args.fd is None
    assert parse_args(SimulatorConfig(tokens=2, fault="drop_mid").to_args())[0].fault == "drop_mid"


def test_a_bad_flag_stops_with_one_clear_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "simulator", "--tokens", "lots"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "simulator: tokens: expected int, got 'lots'"


def test_config_can_change_over_http_while_running(http: httpx.Client) -> None:
    assert http.post("/_sim/config", json={"tokens": 2, "models": ["solo:1b"]}).json()["tokens"] == 2
    assert http.get("/_sim/config").json()["models"] == ["solo:1b"]
    assert http.post("/api/chat", json=chat_body()).status_code == 404
    assert len(http.post("/api/chat", json=chat_body(model="solo:1b")).text.splitlines()) == 3
    assert http.post("/_sim/config", json={"tokens": "x"}).status_code == 400
    assert http.post("/_sim/config", json={"warp": 9}).status_code == 400


@pytest.mark.costly  # two more servers
def test_two_thread_servers_are_independent() -> None:
    with serve_in_thread(tokens=1, token_delay=0) as one, serve_in_thread(tokens=2, token_delay=0) as two:
        assert one.url != two.url
        assert len(httpx.post(one.url + "/api/chat", json=chat_body()).text.splitlines()) == 2
        assert len(httpx.post(two.url + "/api/chat", json=chat_body()).text.splitlines()) == 3
        assert one.stats()["total"] == 1 == two.stats()["total"]
    with pytest.raises(httpx.ConnectError):
        httpx.get(one.url + "/")
    one.stop()  # stopping twice is harmless


@pytest.mark.costly  # a simulator process
def test_a_child_process_simulator_speaks_the_same_api() -> None:
    handle = serve_in_subprocess(SimulatorConfig(tokens=3, token_delay=0, models=("tiny:1b",)))
    try:
        client = ollama.Client(host=handle.url)
        answer = client.chat(model="tiny:1b", messages=QUESTION, stream=False)
        client.close()
        assert answer.eval_count == 3
        assert handle.stats()["requests"] == {"/api/chat": 1}
        assert handle.configure(tokens=1).tokens == 1
        with pytest.raises(ConfigError, match="tokens"):
            handle.configure(tokens=-1)
        assert len(httpx.post(handle.url + "/api/chat", json=chat_body("tiny:1b")).text.splitlines()) == 2
        handle.reset()
        assert handle.wait_for(lambda s: s["total"] == 0, timeout=1)["requests"] == {}
    finally:
        handle.stop()
    assert handle.process.returncode is not None
