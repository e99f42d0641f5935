"""Each protocol's own shapes (docs/contract.md §3, §5): routes, errors, refusals, usage, the cloud rule."""

from __future__ import annotations

import dataclasses
import json

import pytest

from common.settings import Settings
from common.sources import Identity, RequestSource
from proxy_app.bodies import multipart_model
from proxy_app.cloud_policy import check_cloud_access, is_cloud_model
from proxy_app.dialects import ANTHROPIC, NDJSON, OPENAI_SSE, RESPONSES, anthropic_error_type, dialect_for
from proxy_app.errors import BadRequest, Forbidden, NotFound
from proxy_app.routes import Body, Lane, resolve, wants_stream
from proxy_app.usage_parse import UsageTracker, anthropic_usage, responses_usage
from tests.proxy.agent_upstream import anthropic_body, anthropic_events, responses_body, responses_events


@pytest.mark.parametrize(
    ("method", "path", "lane", "body"),
    [
        ("POST", "/v1/messages", Lane.QUEUED, Body.JSON),
        ("POST", "/v1/responses", Lane.QUEUED, Body.JSON),
        ("POST", "/v1/audio/transcriptions", Lane.QUEUED, Body.MULTIPART),
        ("GET", "/api/status", Lane.FAST, Body.NONE),
        ("GET", "/api/experimental/model-recommendations", Lane.FAST, Body.NONE),
        ("POST", "/api/me", Lane.ACCOUNT, Body.OPTIONAL_JSON),
        ("POST", "/api/signout", Lane.ACCOUNT, Body.OPTIONAL_JSON),
        ("DELETE", "/api/user/keys/c3NoLWVkMjU1MTk", Lane.ACCOUNT, Body.OPTIONAL_JSON),
        ("POST", "/api/experimental/web_search", Lane.ACCOUNT, Body.JSON),
        ("POST", "/api/experimental/web_fetch", Lane.ACCOUNT, Body.JSON),
        ("POST", "/api/blobs/sha256-" + "Ab" * 32, Lane.MANAGE, Body.RAW),
        ("HEAD", "/api/blobs/sha256:" + "AB" * 32, Lane.MANAGE, Body.NONE),
    ],
)
def test_every_new_route_has_its_lane_and_body(method, path, lane, body):
    route = resolve(method, path)
    assert (route.lane, route.body) == (lane, body)
    assert bool(route.admin_only) == (lane in (Lane.MANAGE, Lane.ACCOUNT))


@pytest.mark.parametrize(
    "path",
    [
        "/api/blobs/sha256:" + "a" * 63,
        "/api/blobs/sha256_" + "a" * 64,
        "/api/blobs/SHA256:" + "a" * 64,
        "/api/blobs/sha256:" + "g" * 64,
        "/api/user/keys/",
        "/api/user/keys/a/b",
        "/api/user/keys/..",
        "/api/experimental/other",
    ],
)
def test_near_misses_of_the_new_routes_are_404(path):
    with pytest.raises(NotFound):
        resolve("DELETE" if "keys" in path else "POST", path)


def test_the_blob_and_key_path_goes_upstream_as_given():
    digest = "sha256-" + "aB" * 32
    assert resolve("POST", "/api/blobs/" + digest).upstream_path == "/api/blobs/" + digest
    assert resolve("DELETE", "/api/user/keys/abc_-=").upstream_path == "/api/user/keys/abc_-="


@pytest.mark.parametrize(("path", "stream"), [("/v1/messages", True), ("/v1/responses", True)])
def test_agent_protocols_stream_only_when_asked(path, stream):
    route = resolve("POST", path)
    assert wants_stream(route, {"stream": True}) is stream
    assert wants_stream(route, {}) is False
    assert wants_stream(resolve("POST", "/v1/audio/transcriptions"), {"stream": True}) is False


@pytest.mark.parametrize(
    ("path", "dialect"),
    [
        ("/api/chat", NDJSON),
        ("/v1/chat/completions", OPENAI_SSE),
        ("/v1/messages", ANTHROPIC),
        ("/v1/messages/count_tokens", ANTHROPIC),
        ("/v1/responses", RESPONSES),
    ],
)
def test_each_route_speaks_its_dialect(path, dialect):
    assert dialect_for(path) is dialect


def test_queue_comments_are_sse_comments_or_nothing():
    for dialect in (OPENAI_SSE, ANTHROPIC, RESPONSES):
        assert dialect.queue_comment(3) == b": queued position=3\n\n"
        assert dialect.queue_comment(2, eta=40) == b": queued position=2 eta=40\n\n"
    assert NDJSON.queue_comment(3) == b""


def sse_data(frame: bytes) -> list[tuple[str | None, dict]]:
    """(event name, data) of each SSE event in ``frame``."""
    events = []
    for block in frame.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.strip().splitlines() if ": " in line)
        if "data" in lines:
            events.append((lines.get("event"), json.loads(lines["data"])))
    return events


def test_an_anthropic_stream_fails_with_its_error_event():
    frame = ANTHROPIC.inband_error("Ollama is busy", tail=b"}\n", status=503)
    assert frame.startswith(b"\nevent: error\n")
    assert sse_data(frame) == [
        ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Ollama is busy"}})
    ]


def test_a_responses_stream_fails_with_error_then_response_failed():
    (error_name, error), (failed_name, failed) = sse_data(
        RESPONSES.inband_error("cut", tail=b"}\n\n", status=502)
    )
    assert (error_name, error["type"], error["message"]) == ("error", "error", "cut")
    assert failed_name == failed["type"] == "response.failed"
    assert failed["response"]["status"] == "failed"
    assert failed["response"]["error"] == {"code": "server_error", "message": "cut"}


def test_no_dialect_fakes_an_end():
    for dialect in (NDJSON, OPENAI_SSE, ANTHROPIC, RESPONSES):
        frame = dialect.inband_error("boom", tail=b"", status=502)
        for fake_end in (b'"done"', b"[DONE]", b"message_stop", b"response.completed"):
            assert fake_end not in frame


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (415, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
        (529, "overloaded_error"),
    ],
)
def test_refusals_on_messages_use_anthropics_error_types(status, kind):
    assert anthropic_error_type(status) == kind
    body = json.loads(ANTHROPIC.refusal_body(status, "why"))
    assert body == {"type": "error", "error": {"type": kind, "message": "why"}}
    assert json.loads(RESPONSES.refusal_body(status, "why")) == {"error": "why"}


@pytest.mark.parametrize(
    ("name", "cloud"),
    [
        ("gpt-oss:120b-cloud", True),
        ("qwen3-coder:480b-CLOUD", True),
        ("deepseek-v3.1:cloud", True),
        ("registry.ollama.ai/library/gpt-oss:20b-cloud", True),
        ("gpt-oss:20b", False),
        ("cloud", False),
        ("my-cloud-model", False),
        ("hf.co/cloud:Q4", False),
        (None, False),
    ],
)
def test_a_cloud_model_is_one_whose_tag_ends_in_cloud(name, cloud):
    assert is_cloud_model(name) is cloud


@pytest.mark.parametrize(
    ("mode", "source", "is_admin", "allowed"),
    [
        ("off", RequestSource.DIRECT_API, True, False),
        ("admin", RequestSource.CUSTOM_APP, False, False),
        ("admin", RequestSource.WEB_CHAT, True, True),
        ("admin", RequestSource.DIRECT_API, False, True),
        ("on", RequestSource.CUSTOM_APP, False, True),
    ],
)
def test_cloud_models_mode_decides_who(settings: Settings, mode, source, is_admin, allowed):
    settings = dataclasses.replace(settings, cloud_models=mode)
    identity = Identity(source=source, priority=5, is_admin=is_admin)
    if allowed:
        check_cloud_access(settings, identity)
    else:
        with pytest.raises(Forbidden):
            check_cloud_access(settings, identity)


def feed_in_pieces(kind: str, data: bytes, size: int) -> tuple[int | None, int | None]:
    tracker = UsageTracker(kind)  # type: ignore[arg-type]
    for start in range(0, len(data), size):
        tracker.feed(data[start : start + size])
    return tracker.usage()


@pytest.mark.parametrize("size", [1, 7, 64, 100_000])
def test_usage_of_an_anthropic_stream_takes_input_from_message_start(size):
    assert feed_in_pieces("anthropic", b"".join(anthropic_events("m")), size) == (12, 2)


@pytest.mark.parametrize("size", [1, 13, 100_000])
def test_usage_of_a_responses_stream_comes_from_response_completed(size):
    assert feed_in_pieces("responses", b"".join(responses_events("m")), size) == (12, 2)


def test_usage_of_whole_agent_bodies():
    assert feed_in_pieces("anthropic", json.dumps(anthropic_body("m"), indent=2).encode(), 50) == (12, 2)
    assert feed_in_pieces("responses", json.dumps(responses_body("m")).encode(), 50) == (12, 2)
    assert anthropic_usage(
        b'data: {"type":"message_delta","usage":{"input_tokens":5,"output_tokens":9}}'
    ) == (5, 9)
    assert responses_usage(b'{"error": {"message": "nope"}}') == (None, None)


def test_a_broken_agent_stream_has_no_completion_count():
    events = anthropic_events("m")
    assert feed_in_pieces("anthropic", b"".join(events[:4]), 64) == (12, None)  # no final count


def test_the_model_of_a_multipart_upload():
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFF\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper:small\r\n--XyZ--\r\n'
    )
    assert multipart_model('multipart/form-data; boundary="XyZ"', body) == "whisper:small"
    with pytest.raises(BadRequest, match="exactly one 'model' part, not none"):  # docs/contract.md §16
        multipart_model("multipart/form-data; boundary=XyZ", body.replace(b'name="model"', b'name="x"'))
    for content_type in ("application/json", "multipart/form-data"):
        with pytest.raises(BadRequest):
            multipart_model(content_type, body)
