"""Fixtures for the simulator's own tests: one in-thread server per session, reset before each test."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import ollama
import openai
import pytest

from simulator import SimulatorConfig, ThreadHandle, serve_in_thread

# Few tokens and no pacing keep the suite fast; tests that need pacing ask for it per request.
FAST = SimulatorConfig(tokens=5, token_delay=0.0)


@pytest.fixture(scope="session")
def sim_server() -> Iterator[ThreadHandle]:
    """A simulator shared by the whole session."""
    handle = serve_in_thread(FAST)
    yield handle
    handle.stop()


@pytest.fixture
def sim(sim_server: ThreadHandle) -> ThreadHandle:
    """The shared simulator with an empty record and its start-up configuration."""
    sim_server.reset()
    return sim_server


@pytest.fixture
def http(sim: ThreadHandle) -> Iterator[httpx.Client]:
    """A plain HTTP client on the simulator, for checking raw bytes and headers."""
    with httpx.Client(base_url=sim.url, timeout=30) as client:
        yield client


@pytest.fixture
def ollama_client(sim: ThreadHandle) -> Iterator[ollama.Client]:
    """The official Ollama client pointed at the simulator."""
    client = ollama.Client(host=sim.url)
    yield client
    client.close()


@pytest.fixture
def openai_client(sim: ThreadHandle) -> Iterator[openai.OpenAI]:
    """The official OpenAI client pointed at the simulator's /v1."""
    with openai.OpenAI(base_url=sim.url + "/v1", api_key="unused", max_retries=0) as client:
        yield client
