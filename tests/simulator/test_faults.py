"""Fault injection: per request (X-Sim-Fault, model prefix) and for every request (config)."""

from __future__ import annotations

import json
import time

import httpx
import ollama
import openai
import pytest

from simulator import Fault, FaultError, ThreadHandle, parse_fault
from simulator.faults import BUSY_MESSAGE
from tests.simulator.helpers import QUESTION, chat_body, ndjson


def read_lines_timed(http: httpx.Client, headers: dict[str, str], **body: object) -> list[tuple[float, str]]:
    """POST /api/chat and note when each NDJSON line arrived (seconds since the request)."""
    started = time.monotonic()
    with http.stream("POST", "/api/chat", json=chat_body(**body), headers=headers) as response:
        assert response.status_code == 200
        return [(time.monotonic() - started, line) for line in response.iter_lines() if line]


def test_status_fault_answers_with_that_status_and_an_ollama_error(
    sim: ThreadHandle, http: httpx.Client
) -> None:
    response = http.post("/api/chat", json=chat_body(), headers={"X-Sim-Fault": "status=500"})
    assert response.status_code == 500
    assert response.json() == {"error": "simulated failure (status 500)"}
    busy = http.post(
        "/api/generate", json={"model": "llama3.2", "prompt": "x"}, headers={"X-Sim-Fault": "status=503"}
    )
    assert busy.status_code == 503 and busy.json() == {"error": BUSY_MESSAGE}
    assert [e["outcome"] for e in sim.entries()] == ["fault", "fault"]
    assert sim.entries()[0]["fault"] == "status=500"


def test_status_fault_reaches_the_official_clients(sim: ThreadHandle) -> None:
    client = ollama.Client(host=sim.url, headers={"X-Sim-Fault": "status=502,message=upstream, gone"})
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat(model="llama3.2", messages=QUESTION)
    client.close()
    assert caught.value.status_code == 502 and caught.value.error == "upstream, gone"
    with openai.OpenAI(base_url=sim.url + "/v1", api_key="x", max_retries=0) as oai:
        with pytest.raises(openai.InternalServerError) as failed:
            oai.chat.completions.create(
                model="llama3.2", messages=QUESTION, extra_headers={"X-Sim-Fault": "status=500"}
            )
    assert failed.value.body["type"] == "api_error"


@pytest.mark.costly  # waits out a stall
def test_stall_headers_delays_the_response_headers(http: httpx.Client) -> None:
    started = time.monotonic()
    with http.stream(
        "POST", "/api/chat", json=chat_body(), headers={"X-Sim-Fault": "stall_headers=0.6"}
    ) as r:
        waited = time.monotonic() - started
        assert r.status_code == 200
        assert len(ndjson(r.read().decode())) == 6
    assert 0.6 <= waited < 3


@pytest.mark.costly  # waits out a stall
def test_stall_mid_pauses_after_n_chunks(http: httpx.Client) -> None:
    lines = read_lines_timed(http, {"X-Sim-Fault": "stall_mid=0.6,after=2"})
    times = [t for t, _ in lines]
    assert len(lines) == 6 and json.loads(lines[-1][1])["done"] is True
    assert times[1] < 0.5  # the first two chunks come at once
    assert times[2] - times[1] >= 0.55  # then the stall (client-side clocks: a little slack)


def test_drop_mid_closes_the_connection_after_n_chunks(sim: ThreadHandle, http: httpx.Client) -> None:
    received: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        with http.stream(
            "POST", "/api/chat", json=chat_body(), headers={"X-Sim-Fault": "drop_mid,after=3"}
        ) as r:
            assert r.status_code == 200
            received.extend(line for line in r.iter_lines() if line)
    assert len(received) == 3 and not any(json.loads(line)["done"] for line in received)
    entry = sim.wait_for(lambda s: s["active"] == 0)["log"][-1]
    assert entry["outcome"] == "dropped" and entry["chunks"] == 3


def test_drop_mid_without_streaming_sends_headers_then_nothing(http: httpx.Client) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        http.post("/api/chat", json=chat_body(stream=False), headers={"X-Sim-Fault": "drop_mid"})


def test_drop_headers_closes_before_any_response(sim: ThreadHandle, http: httpx.Client) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        http.post("/api/chat", json=chat_body(), headers={"X-Sim-Fault": "drop_headers"})
    assert sim.wait_for(lambda s: s["active"] == 0)["log"][-1]["outcome"] == "dropped"
    assert http.get("/api/version").status_code == 200  # the server itself is fine


def test_error_mid_ends_a_native_stream_with_an_in_band_error(http: httpx.Client) -> None:
    lines = read_lines_timed(http, {"X-Sim-Fault": "error_mid,after=2,message=CUDA out of memory"})
    objects = [json.loads(line) for _, line in lines]
    assert len(objects) == 3 and objects[-1] == {"error": "CUDA out of memory"}
    assert not any(o.get("done") for o in objects)


def test_error_mid_ends_an_sse_stream_without_done(sim: ThreadHandle, http: httpx.Client) -> None:
    response = http.post(
        "/v1/chat/completions", json=chat_body(stream=True), headers={"X-Sim-Fault": "error_mid,after=1"}
    )
    assert "[DONE]" not in response.text
    assert response.text.endswith('"type":"api_error","param":null,"code":null}}\n\n')
    with openai.OpenAI(base_url=sim.url + "/v1", api_key="x", max_retries=0) as oai:
        stream = oai.chat.completions.create(
            model="llama3.2",
            messages=QUESTION,
            stream=True,
            extra_headers={"X-Sim-Fault": "error_mid,after=1"},
        )
        with pytest.raises(openai.APIError):
            list(stream)


def test_a_model_prefix_carries_a_fault_through_any_client(sim: ThreadHandle, http: httpx.Client) -> None:
    response = http.post("/api/chat", json=chat_body(model="sim-fault:status=502/llama3.2"))
    assert response.status_code == 502
    entry = sim.entries("/api/chat")[-1]
    assert entry["model"] == "llama3.2" and entry["fault"] == "status=502"
    dropped = chat_body(model="sim-fault:drop_mid,after=1/qwen2.5-coder:7b")
    with pytest.raises(httpx.RemoteProtocolError):
        http.post("/api/chat", json=dropped)


def test_a_configured_fault_hits_every_request_until_reset(sim: ThreadHandle, http: httpx.Client) -> None:
    sim.configure(fault="status=500")
    assert http.get("/api/tags").status_code == 500
    assert http.post("/api/chat", json=chat_body()).status_code == 500
    assert http.post("/api/chat", json=chat_body(), headers={"X-Sim-Fault": "status=418"}).status_code == 418
    sim.reset()
    assert http.get("/api/tags").status_code == 200


def test_a_bad_fault_spec_is_a_400(http: httpx.Client) -> None:
    response = http.post("/api/chat", json=chat_body(), headers={"X-Sim-Fault": "explode"})
    assert response.status_code == 400 and "unknown fault" in response.json()["error"]


def test_parse_fault_reads_items_and_a_trailing_message() -> None:
    assert parse_fault("") == Fault()
    fault = parse_fault("stall_mid=1.5, after=4, drop_mid, message=a, b")
    assert (fault.stall_mid, fault.after, fault.drop_mid, fault.message) == (1.5, 4, True, "a, b")
    assert parse_fault("status=503").status_message() == BUSY_MESSAGE
    for bad in ("status=99", "status=abc", "after=-1", "drop_mid=no", "warp=1"):
        with pytest.raises(FaultError):
            parse_fault(bad)
