"""The native API, checked with the official Ollama client and with raw bytes."""

from __future__ import annotations

import hashlib
import re

import httpx
import ollama
import pytest

from simulator import ThreadHandle
from tests.simulator.helpers import QUESTION, chat_body, ndjson

RFC3339_NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
FINAL_FIELDS = {
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
}


def test_chat_streams_tokens_then_a_final_chunk_with_statistics(ollama_client: ollama.Client) -> None:
    parts = list(ollama_client.chat(model="llama3.2", messages=QUESTION, stream=True))
    assert len(parts) == 6
    assert all(p.done is False and p.message.role == "assistant" for p in parts[:-1])
    assert all(p.message.content for p in parts[:-1])
    final = parts[-1]
    assert final.done is True and final.done_reason == "stop" and final.message.content == ""
    assert final.eval_count == 5 and final.prompt_eval_count > 0
    assert final.total_duration >= final.eval_duration > 0 and final.load_duration > 0
    assert all(p.model == "llama3.2" and RFC3339_NANO.match(p.created_at) for p in parts)


def test_chat_without_streaming_is_one_object_with_the_whole_answer(ollama_client: ollama.Client) -> None:
    streamed = "".join(p.message.content for p in ollama_client.chat("llama3.2", QUESTION, stream=True))
    whole = ollama_client.chat(model="llama3.2", messages=QUESTION, stream=False)
    assert whole.done is True and whole.eval_count == 5
    assert whole.message.content == streamed  # the same prompt gives the same answer


def test_chat_stream_is_ndjson_with_nanosecond_timestamps(http: httpx.Client) -> None:
    response = http.post("/api/chat", json=chat_body())
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = ndjson(response.text)
    assert [line["done"] for line in lines] == [False] * 5 + [True]
    assert set(lines[0]) == {"model", "created_at", "message", "done"}
    assert FINAL_FIELDS | {"done_reason", "message"} <= set(lines[-1])
    assert all(RFC3339_NANO.match(line["created_at"]) for line in lines)
    # Nanoseconds, not microseconds: some stamp needs more than six fraction digits.
    assert any(len(line["created_at"].split(".")[-1]) > 7 for line in lines)


def test_generate_streams_responses_and_ends_with_context(ollama_client: ollama.Client) -> None:
    parts = list(ollama_client.generate(model="qwen2.5-coder:7b", prompt="def gcd(a, b):", stream=True))
    assert [p.done for p in parts] == [False] * 5 + [True]
    assert all(p.response for p in parts[:-1])
    final = parts[-1]
    assert final.done_reason == "stop" and final.response == ""
    assert final.context and all(isinstance(i, int) for i in final.context)
    assert len(final.context) == final.prompt_eval_count + final.eval_count


def test_num_predict_cuts_the_answer_with_done_reason_length(ollama_client: ollama.Client) -> None:
    answer = ollama_client.generate(model="llama3.2", prompt="tell me", options={"num_predict": 2})
    assert answer.done_reason == "length" and answer.eval_count == 2
    assert len(answer.response.split()) == 2


def test_unknown_model_is_404_in_ollamas_words(ollama_client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        ollama_client.chat(model="mistral:7b", messages=QUESTION)
    assert caught.value.status_code == 404
    assert caught.value.error == 'model "mistral:7b" not found, try pulling it first'


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "missing request body"),
        (b'{"model": ', "invalid JSON body"),
        (b'{"messages": []}', "model is required"),
    ],
)
def test_a_bad_request_is_400_with_an_error(http: httpx.Client, body: bytes, message: str) -> None:
    response = http.post("/api/chat", content=body)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_an_empty_chat_only_loads_the_model(http: httpx.Client) -> None:
    answer = http.post("/api/chat", json={"model": "llama3.2", "messages": []}).json()
    assert answer["done"] is True and answer["done_reason"] == "load"


def test_embed_returns_one_deterministic_unit_vector_per_input(ollama_client: ollama.Client) -> None:
    first = ollama_client.embed(model="llama3.2", input=["sea", "dragon"])
    again = ollama_client.embed(model="llama3.2", input="dragon")
    assert len(first.embeddings) == 2 and len(first.embeddings[0]) == 384
    assert first.embeddings[1] == again.embeddings[0] != first.embeddings[0]
    assert abs(sum(v * v for v in first.embeddings[0]) - 1.0) < 1e-9
    assert first.prompt_eval_count == 2 and first.total_duration > 0


def test_legacy_embeddings_returns_one_vector(ollama_client: ollama.Client) -> None:
    vector = ollama_client.embeddings(model="llama3.2", prompt="sea dragon").embedding
    assert len(vector) == 384
    assert vector == ollama_client.embed(model="llama3.2", input="sea dragon").embeddings[0]


def test_list_and_show_describe_the_configured_models(ollama_client: ollama.Client) -> None:
    names = [m.model for m in ollama_client.list().models]
    assert names == ["llama3.2:latest", "qwen2.5-coder:7b"]
    shown = ollama_client.show("qwen2.5-coder:7b")
    assert shown.details.parameter_size == "7B" and shown.details.format == "gguf"
    assert shown.modelinfo["general.architecture"] == "qwen"
    with pytest.raises(ollama.ResponseError) as caught:
        ollama_client.show("absent")
    assert caught.value.status_code == 404


def test_ps_lists_a_model_once_it_has_run(ollama_client: ollama.Client) -> None:
    assert ollama_client.ps().models == []
    ollama_client.generate(model="llama3.2", prompt="hi")
    running = ollama_client.ps().models
    assert [m.model for m in running] == ["llama3.2:latest"]
    assert running[0].expires_at is not None and running[0].size_vram > 0


def test_pull_streams_progress_and_installs_the_model(ollama_client: ollama.Client) -> None:
    progress = list(ollama_client.pull("tinyllama", stream=True))
    assert progress[0].status == "pulling manifest"
    assert progress[-1].status == "success"
    assert any(p.total and p.completed for p in progress)
    assert "tinyllama:latest" in [m.model for m in ollama_client.list().models]
    assert ollama_client.pull("phi3", stream=False).status == "success"


def test_copy_and_delete_change_the_model_list(ollama_client: ollama.Client) -> None:
    assert ollama_client.copy("llama3.2", "backup").status == "success"
    assert "backup:latest" in [m.model for m in ollama_client.list().models]
    assert ollama_client.delete("backup").status == "success"
    assert "backup:latest" not in [m.model for m in ollama_client.list().models]
    with pytest.raises(ollama.ResponseError) as caught:
        ollama_client.delete("backup")
    assert caught.value.status_code == 404


def test_root_and_version_answer_like_ollama(http: httpx.Client) -> None:
    assert http.get("/").text == "Ollama is running"
    head = http.head("/")
    assert head.status_code == 200 and head.content == b""
    assert http.get("/api/version").json() == {"version": "0.12.6"}
    missing = http.get("/api/nothing")
    assert missing.status_code == 404 and missing.text == "404 page not found"


def test_blobs_can_be_uploaded_then_found(http: httpx.Client) -> None:
    digest = "sha256:" + hashlib.sha256(b"weights").hexdigest()
    assert http.head(f"/api/blobs/{digest}").status_code == 404
    assert http.post(f"/api/blobs/{digest}", content=b"weights").status_code == 201
    assert http.head(f"/api/blobs/{digest}").status_code == 200
    assert http.post(f"/api/blobs/{digest}", content=b"other").status_code == 400


def test_model_changes_are_undone_by_reset(sim: ThreadHandle, ollama_client: ollama.Client) -> None:
    ollama_client.delete("llama3.2")
    assert [m.model for m in ollama_client.list().models] == ["qwen2.5-coder:7b"]
    sim.reset()
    assert [m.model for m in ollama_client.list().models] == ["llama3.2:latest", "qwen2.5-coder:7b"]
