"""The model is read as Ollama reads it (docs/contract.md §16): case-variant keys and multipart parts.

Ollama's Go decoder matches JSON keys ignoring case (the last match wins) and
its ``FormValue("model")`` reads a part sent with ``filename=""``; either used
to carry a model past the key's ``models`` and ``CLOUD_MODELS=off``. The attacks
run against a served gateway before the bundled simulator, through the official
``openai`` SDK (``extra_body``) and raw httpx. The ``ollama`` SDK builds its
bodies from typed requests with no extra keys, so it cannot send the attack.
"""

from __future__ import annotations

import httpx
import openai
import pytest
import sqlalchemy as sa

from common.models import APIKey
from common.security import hash_secret
from tests.proxy.multipart_bodies import multipart

ALLOWED = "qwen2.5-coder:7b"
FORBIDDEN = "llama3.2"  # the simulator serves both
CLOUD = "gpt-oss:120b-cloud"
pytestmark = pytest.mark.costly  # each test serves the gateway on a real socket

HELLO = [{"role": "user", "content": "hi"}]
AUDIO = bytes(range(256)) * 16


# --- through the gateway --------------------------------------------------------------------------


@pytest.fixture
def guarded(gw_settings, accounts, serve):
    """A gateway whose key may use only ``qwen*``, with cloud models off; returns (server, key)."""

    def start(**overrides):
        settings = gw_settings(CLOUD_MODELS="off", **overrides)
        made = accounts(settings)
        key = made.key(priority=2)
        with made.sessions.begin() as session:  # before the gateway starts: no refresh to wait for
            session.execute(
                sa.update(APIKey).where(APIKey.key_hash == hash_secret(key)).values(models=["qwen*"])
            )
        return serve(settings), key

    return start


@pytest.mark.parametrize("second", [FORBIDDEN, CLOUD])
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/chat", {"messages": HELLO, "stream": False}),
        ("/api/generate", {"prompt": "hi", "stream": False}),
        ("/api/embed", {"input": "hi"}),
        ("/v1/chat/completions", {"messages": HELLO}),
        ("/v1/messages", {"max_tokens": 8, "messages": HELLO}),
        ("/v1/responses", {"input": "hi"}),
    ],
)
@pytest.mark.parametrize("key_name", ["Model", "MODEL", "mOdel"])
def test_a_case_variant_model_key_is_400_and_never_forwarded(guarded, sim, path, body, second, key_name):
    server, key = guarded()
    sent = {"model": ALLOWED, **body, key_name: second}
    response = httpx.post(server.url + path, json=sent, headers={"X-API-Key": key}, timeout=30)
    assert response.status_code == 400, response.text
    assert f"'{key_name}'" in response.text and "'model'" in response.text
    assert not sim.entries(path)
    allowed = httpx.post(
        server.url + path, json={"model": ALLOWED, **body}, headers={"X-API-Key": key}, timeout=30
    )
    assert allowed.status_code == 200, allowed.text


def test_a_long_s_stream_key_is_400(guarded, sim):
    server, key = guarded()
    body = {"model": ALLOWED, "messages": HELLO, "\u017ftream": False}
    response = httpx.post(server.url + "/api/chat", json=body, headers={"X-API-Key": key}, timeout=30)
    assert response.status_code == 400
    assert (
        response.json()["error"]
        == "field '\u017ftream' must be spelled 'stream' (field names are case-sensitive)"
    )
    assert not sim.entries("/api/chat")


@pytest.mark.parametrize("second", [FORBIDDEN, CLOUD])
def test_the_openai_sdk_extra_body_cannot_slip_a_model_past_the_policy(guarded, sim, second):
    server, key = guarded()
    with openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as raised:
            client.chat.completions.create(model=ALLOWED, messages=HELLO, extra_body={"Model": second})
        assert raised.value.body == "field 'Model' must be spelled 'model' (field names are case-sensitive)"
        with pytest.raises(openai.BadRequestError):
            client.embeddings.create(model=ALLOWED, input="hi", extra_body={"MODEL": second})
        assert client.chat.completions.create(model=ALLOWED, messages=HELLO).choices
    assert not sim.entries("/v1/embeddings")
    assert len(sim.entries("/v1/chat/completions")) == 1


def transcribe(server, key, body: bytes, content_type: str) -> httpx.Response:
    return httpx.post(
        server.url + "/v1/audio/transcriptions",
        content=body,
        headers={"X-API-Key": key, "Content-Type": content_type},
        timeout=30,
    )


@pytest.mark.parametrize("filename", ["", "model.txt"])
@pytest.mark.parametrize(
    ("model", "status", "message"),
    [
        (FORBIDDEN, 403, f"model '{FORBIDDEN}' is not allowed for this key"),
        (CLOUD, 403, f"model '{CLOUD}' is not allowed for this key"),
    ],
)
def test_a_model_part_with_a_filename_is_the_model(guarded, sim, filename, model, status, message):
    server, key = guarded()
    body, content_type = multipart(("file", "a.wav", AUDIO), ("model", filename, model.encode()))
    response = transcribe(server, key, body, content_type)
    assert (response.status_code, response.json()["error"]) == (status, message)
    assert not sim.entries("/v1/audio/transcriptions")


def test_cloud_models_off_holds_for_a_model_part_with_an_empty_filename(agents, sim):
    server, key, _ = agents(CLOUD_MODELS="off")  # no models policy: CLOUD_MODELS alone decides
    body, content_type = multipart(("file", "a.wav", AUDIO), ("model", "", CLOUD.encode()))
    response = transcribe(server, key, body, content_type)
    assert response.status_code == 403
    assert response.json()["error"] == "cloud models are disabled on this gateway"
    assert not sim.entries("/v1/audio/transcriptions")


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ([("model", None, ALLOWED.encode()), ("model", "", FORBIDDEN.encode())], "not several"),
        ([("model", "", FORBIDDEN.encode()), ("model", None, ALLOWED.encode())], "not several"),
        ([("mod", None, ALLOWED.encode())], "not none"),
    ],
)
def test_two_model_parts_or_none_are_400(guarded, sim, parts, message):
    server, key = guarded()
    body, content_type = multipart(("file", "a.wav", AUDIO), *parts)
    response = transcribe(server, key, body, content_type)
    assert response.status_code == 400 and message in response.json()["error"]
    assert not sim.entries("/v1/audio/transcriptions")


def test_a_body_split_differently_by_another_parser_is_400(guarded, sim):
    # After its first line Go's reader takes only CRLF--boundary CRLF as a delimiter; a bare LF
    # after the boundary leaves the next "part" inside the model's value for Go, not for werkzeug.
    server, key = guarded()
    body, content_type = multipart(("file", "a.wav", AUDIO), ("model", None, ALLOWED.encode()))
    tricky = body.replace(
        b'b0undary\r\nContent-Disposition: form-data; name="model"',
        b'b0undary\nContent-Disposition: form-data; name="model"',
    )
    assert tricky != body
    response = transcribe(server, key, tricky, content_type)
    assert response.status_code == 400 and "delimited" in response.json()["error"]
    assert not sim.entries("/v1/audio/transcriptions")


def test_the_allowed_model_in_one_part_is_served(guarded, sim):
    server, key = guarded()
    body, content_type = multipart(("file", "a.wav", AUDIO), ("model", None, ALLOWED.encode()))
    response = transcribe(server, key, body, content_type)
    assert response.status_code == 200, response.text
    assert len(sim.entries("/v1/audio/transcriptions")) == 1
    with openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0) as client:
        assert client.audio.transcriptions.create(model=ALLOWED, file=("a.wav", AUDIO, "audio/wav")).text
        with pytest.raises(openai.PermissionDeniedError):
            client.audio.transcriptions.create(model=FORBIDDEN, file=("a.wav", AUDIO, "audio/wav"))
