"""One access-log line per request on the real server's stdout (docs/contract.md §6), never a secret."""

from __future__ import annotations

import json

import httpx
import pytest
import sqlalchemy as sa

from common.models import APIKey
from common.security import new_api_key
from tests.conftest import settings_env
from tests.live import LiveServer
from tests.proxy.support import AdminApp, Browser, chat_body

pytestmark = pytest.mark.costly  # a real `python asgi.py` per test

PROMPT = "the-secret-prompt-xyzzy"
PERSON_HEADER = "X-OpenWebUI-User-Email"


@pytest.fixture
def live(gw_settings, accounts, sim, tmp_path):
    """Start ``python asgi.py`` with an access-log format; returns (server, key)."""
    servers: list[LiveServer] = []

    def start(mode: str) -> tuple[LiveServer, str]:
        settings = gw_settings(ACCESS_LOG=mode)
        db = accounts(settings)
        key = db.key(name="laptop")
        with db.sessions.begin() as session:  # its end users are named in the access log too
            session.execute(
                sa.update(APIKey).where(APIKey.name == "laptop").values(end_user_header=PERSON_HEADER)
            )
        env = settings_env(tmp_path, OLLAMA_URLS=f"{sim.url}=1", ACCESS_LOG=mode)
        servers.append(LiveServer(env).start())
        return servers[-1], key

    yield start
    for server in servers:
        server.stop()


def traffic(server: LiveServer, key: str) -> dict[str, str]:
    """A served chat, a refused key, an admin page and /health; their X-Request-IDs (or paths)."""
    body = chat_body(stream=False)
    body["messages"][0]["content"] = PROMPT
    with httpx.Client(base_url=server.url, timeout=30) as client:
        served = client.post("/api/chat", json=body, headers={"Authorization": f"Bearer {key}"})
        refused = client.post("/api/chat", json=body, headers={"X-API-Key": new_api_key()})
        login = client.get("/auth/login")
        health = client.get("/health")
    assert (served.status_code, refused.status_code, login.status_code) == (200, 401, 200)
    return {
        "served": served.headers["X-Request-ID"],
        "refused": refused.headers["X-Request-ID"],
        "health": health.headers["X-Request-ID"],
    }


def assert_no_secret(output: str, key: str) -> None:
    assert key not in output and key[12:] not in output
    assert PROMPT not in output and "Bearer" not in output


def test_text_lines(live):
    server, key = live("text")
    ids = traffic(server, key)
    server.stop()  # the output is complete once the server is gone
    output = server.output()
    lines = {name: [line for line in output.splitlines() if f" {rid} " in line] for name, rid in ids.items()}
    assert all(len(found) == 1 for found in lines.values()), lines
    served = lines["served"][0].split(" ")
    assert served[3:8] == ["custom_app", "key:laptop", "POST", "/api/chat", "200"]
    assert served[8].startswith("wait=") and served[9].endswith("ms")
    refused = lines["refused"][0].split(" ")
    assert refused[3] == "-" and refused[5:8] == ["POST", "/api/chat", "401"]
    assert refused[4].startswith("refused-key:sdk_") and len(refused[4]) == len("refused-key:") + 12
    assert len([line for line in output.splitlines() if " GET /auth/login 200 " in line]) == 1
    assert_no_secret(output, key)


def test_a_text_line_names_the_end_user_behind_a_key_quoted(live):
    # README "End users behind a shared key": who is <key name>/end-user:<value>; a space means quotes.
    server, key = live("text")
    headers = {"Authorization": f"Bearer {key}", PERSON_HEADER: "Ann Lee <ann@example.org>"}
    answer = httpx.post(server.url + "/api/chat", json=chat_body(stream=False), headers=headers, timeout=30)
    assert answer.status_code == 200
    server.stop()
    rid = answer.headers["X-Request-ID"]
    [line] = [line for line in server.output().splitlines() if f" {rid} " in line]
    assert ' custom_app "key:laptop/end-user:Ann Lee <ann@example.org>" POST /api/chat 200 ' in line


def test_json_lines(live):
    server, key = live("json")
    ids = traffic(server, key)
    server.stop()
    records = []
    for line in server.output().splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    by_id = {}
    for record in records:
        by_id.setdefault(record["request_id"], []).append(record)
    served = by_id[ids["served"]]
    assert len(served) == 1 and len(by_id[ids["refused"]]) == 1 and len(by_id[ids["health"]]) == 1
    assert {name: served[0][name] for name in ("source", "who", "method", "path", "status")} == {
        "source": "custom_app",
        "who": "key:laptop",
        "method": "POST",
        "path": "/api/chat",
        "status": 200,
    }
    assert served[0]["wait_ms"] is not None and served[0]["duration_ms"] >= served[0]["wait_ms"]
    assert [r["path"] for r in records].count("/auth/login") == 1
    assert_no_secret(server.output(), key)


@pytest.mark.parametrize("mode", ["text", "json"])
def test_a_web_chat_reply_has_exactly_one_line(gw_settings, accounts, sim, tmp_path, mode):
    # One request, one line: the reply's generation writes it (Gateway.finish), the wrapper none.
    settings = gw_settings(ACCESS_LOG=mode)
    accounts(settings).user("bob")
    bob = Browser(AdminApp(settings), "bob")
    conversation_id = bob.new_conversation()
    server = LiveServer(settings_env(tmp_path, OLLAMA_URLS=f"{sim.url}=1", ACCESS_LOG=mode)).start()
    try:
        body = {"conversation_id": conversation_id, "content": PROMPT, "model": "llama3.2"}
        answer = httpx.post(server.url + "/chat/api/reply", json=body, headers=bob.headers(), timeout=30)
        assert answer.status_code == 200 and '"done"' in answer.text
    finally:
        server.stop()
    rid = answer.headers["X-Request-ID"]
    lines = [line for line in server.output().splitlines() if rid in line]
    assert len(lines) == 1, lines
    if mode == "json":
        record = json.loads(lines[0])
        assert (record["source"], record["who"], record["status"]) == ("web_chat", "user:bob", 200)
    else:
        assert " web_chat user:bob POST " in lines[0]
    assert PROMPT not in server.output()


def test_off_writes_no_lines(live):
    server, key = live("off")
    traffic(server, key)
    server.stop()
    assert "/api/chat" not in server.output() and "/auth/login" not in server.output()
