"""The chat page, its conversation API and the /account home (docs/contract.md §9)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from admin_app.extensions import db
from common.chat import TITLE_MAX, title_from
from common.dispatch import is_admin_path
from common.models import ChatMessage, RequestLog, utcnow
from tests.admin.helpers import csrf_token, login

API = "/chat/api/conversations"


@pytest.fixture
def carol_client(app, make_user):
    """A second ordinary user, signed in."""
    make_user("carol")
    client = app.test_client()
    assert login(client, "carol").status_code == 302
    return client


def add_message(app, conversation_id: int, role: str, content: str, status: str = "complete") -> None:
    """Store a message as the gateway's streaming endpoint does."""
    with app.app_context():
        message = ChatMessage(conversation_id=conversation_id, role=role, content=content, status=status)
        db.session.add(message)
        db.session.commit()


def test_strangers_are_sent_to_the_login_page_and_the_api_answers_401(client):
    response = client.get("/chat")
    assert response.status_code == 302 and response.location == "/auth/login?next=/chat"
    assert client.get("/account").location.startswith("/auth/login")
    response = client.get(API)
    assert response.status_code == 401 and response.get_json() == {"error": "sign in to use the chat"}


def test_the_page_has_the_fixed_hooks(user_client):
    body = user_client.get("/chat").get_data(as_text=True)
    assert re.search(r'<label for="chat-input"[^>]*>Message</label>', body)
    assert re.search(r'<textarea id="chat-input"', body)
    assert re.search(r"<span>Model</span>\s*<select", body)
    for name in ("Send", "Stop", "New chat"):
        assert re.search(rf"<button[^>]*>{name}</button>", body), name
    assert 'name="csrf-token"' in body and "<script>" not in body


def test_a_user_creates_lists_reads_renames_exports_and_deletes(app, user_client):
    created = user_client.post(API, json={"model": "llama3.2"})
    assert created.status_code == 201
    conversation = created.get_json()
    assert set(conversation) == {"id", "title", "model", "created_at", "updated_at"}
    assert (conversation["title"], conversation["model"]) == ("New chat", "llama3.2")
    add_message(app, conversation["id"], "user", "What is a *seadragon*?")
    add_message(app, conversation["id"], "assistant", "A fish.", status="stopped")
    assert [c["id"] for c in user_client.get(API).get_json()] == [conversation["id"]]
    read = user_client.get(f"{API}/{conversation['id']}").get_json()
    assert [(m["role"], m["content"], m["status"]) for m in read["messages"]] == [
        ("user", "What is a *seadragon*?", "complete"),
        ("assistant", "A fish.", "stopped"),
    ]
    renamed = user_client.patch(f"{API}/{conversation['id']}", json={"title": "  Sea   creatures "})
    assert renamed.status_code == 200 and renamed.get_json()["title"] == "Sea creatures"
    export = user_client.get(f"{API}/{conversation['id']}/export")
    assert export.mimetype == "text/markdown"
    assert "attachment" in export.headers["Content-Disposition"]
    text = export.get_data(as_text=True)
    assert text.startswith("# Sea creatures\n") and "## You\n\nWhat is a *seadragon*?" in text
    assert "## Assistant (stopped)\n\nA fish." in text
    assert user_client.delete(f"{API}/{conversation['id']}").get_json() == {"deleted": conversation["id"]}
    assert user_client.get(API).get_json() == []
    assert user_client.get(f"{API}/{conversation['id']}").status_code == 404


def test_nobody_else_can_read_or_change_a_conversation_admins_included(
    user_client, carol_client, admin_client
):
    conversation_id = user_client.post(API, json={}).get_json()["id"]
    for other in (carol_client, admin_client):
        assert other.get(API).get_json() == []
        for method, url in (
            ("GET", f"{API}/{conversation_id}"),
            ("PATCH", f"{API}/{conversation_id}"),
            ("DELETE", f"{API}/{conversation_id}"),
            ("GET", f"{API}/{conversation_id}/export"),
        ):
            response = other.open(url, method=method, json={"title": "mine now"})
            assert response.status_code == 404, (method, url)
            assert response.get_json() == {"error": "conversation not found"}
    assert user_client.get(f"{API}/{conversation_id}").get_json()["title"] == "New chat"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"title": ""}, "title must be 1 to 80 characters long"),
        ({"title": "x" * 81}, "title must be 1 to 80 characters long"),
        ({"title": 5}, "title must be a string"),
        ({"model": ""}, "model must be a model name (1 to 200 characters)"),
        ({"owner": 2}, "unknown field: owner"),
        ([], "expected a JSON object"),
    ],
)
def test_bad_changes_are_refused_with_a_clear_message(user_client, body, message):
    conversation_id = user_client.post(API).get_json()["id"]
    response = user_client.patch(f"{API}/{conversation_id}", json=body)
    assert response.status_code == 400 and response.get_json() == {"error": message}


def test_every_state_changing_chat_call_needs_the_csrf_token(app_factory, bob):
    app = app_factory(WTF_CSRF_ENABLED=True)
    client = app.test_client()
    assert login(client, "bob").status_code == 302
    refused = client.post(API, json={})
    assert refused.status_code == 400 and "CSRF" in refused.get_json()["error"]
    token = csrf_token(client, "/auth/account")
    created = client.post(API, json={}, headers={"X-CSRFToken": token})
    assert created.status_code == 201
    url = f"{API}/{created.get_json()['id']}"
    assert client.patch(url, json={"title": "t"}).status_code == 400
    assert client.delete(url).status_code == 400
    assert client.patch(url, json={"title": "t"}, headers={"X-CSRFToken": token}).status_code == 200
    assert client.delete(url, headers={"X-CSRFToken": token}).status_code == 200


def test_titles_come_from_the_first_message():
    assert title_from("  Why is\nthe sea   blue? ") == "Why is the sea blue?"
    long = title_from("word " * 100)
    assert len(long) == TITLE_MAX and long.endswith("…")
    assert title_from(" \n ") == "New chat"


def test_the_home_page_links_the_chat_and_shows_only_the_users_own_usage(app, user_client, bob, alice):
    now = utcnow()
    with app.app_context():
        for user_id, hours_ago, prompt, completion, gpu_ms in (
            (bob.id, 1, 10, 20, 1500),
            (bob.id, 30, 5, 5, 2500),  # within 7 days, not 24 hours
            (bob.id, 24 * 8, 100, 100, 9000),  # older than 7 days
            (alice.id, 1, 1000, 1000, 70_000),  # someone else
        ):
            db.session.add(
                RequestLog(
                    created_at=now - timedelta(hours=hours_ago),
                    request_id=f"r{user_id}{hours_ago}",
                    source="web_chat",
                    user_id=user_id,
                    method="POST",
                    endpoint="/api/chat",
                    status=200,
                    prompt_tokens=prompt,
                    completion_tokens=completion,
                    gpu_ms=gpu_ms,
                )
            )
        db.session.commit()
    body = user_client.get("/account").get_data(as_text=True)
    assert 'href="/chat"' in body
    rows = dict(re.findall(r'<tr data-usage="\d"><th scope="row">([^<]+)</th>(.*?)</tr>', body))
    # Requests, prompt tokens, answer tokens.
    assert re.findall(r'<td class="num">(\d+)</td>', rows["Last 24 hours"]) == ["1", "10", "20"]
    assert re.findall(r'<td class="num">(\d+)</td>', rows["Last 7 days"]) == ["2", "15", "25"]
    # docs/contract.md §13: the user's own GPU time too.
    assert re.findall(r"<td class=\"num\" data-gpu>([^<]+)</td>", rows["Last 24 hours"]) == ["1.5 s"]
    assert re.findall(r"<td class=\"num\" data-gpu>([^<]+)</td>", rows["Last 7 days"]) == ["4.0 s"]
    assert "/auth/token" in body and "/api/chat" in body


def test_the_home_page_prints_public_url_and_never_the_host_header(app_factory, settings_factory, bob):
    app = app_factory(settings_factory(PUBLIC_URL="https://llm.example.org/gw"))
    client = app.test_client()
    # An https PUBLIC_URL makes the session cookie Secure: talk https to the test app.
    login(client, "bob", base_url="https://localhost")
    body = client.get("/account", base_url="https://localhost").get_data(as_text=True)
    assert "https://llm.example.org/gw/v1" in body and "BASE=https://llm.example.org/gw" in body
    assert "localhost" not in body


def test_the_home_page_without_public_url_lets_the_page_fill_in_its_origin(user_client):
    body = user_client.get("/account").get_data(as_text=True)
    assert 'data-base=""' in body and "localhost" not in body  # the request's host is never printed
    assert "/static/js/account.js" in body


def test_the_pages_go_to_flask_and_the_answers_to_the_gateway():
    assert is_admin_path("/chat") and is_admin_path("/account")
    assert is_admin_path("/chat/api/conversations") and is_admin_path("/chat/api/conversations/3/export")
    assert not is_admin_path("/chat/api/reply")
    assert not is_admin_path("/")


def test_an_unknown_admin_page_is_an_html_404(user_client):
    response = user_client.get("/chat/nothing", headers={"Accept": "text/html"})
    assert response.status_code == 404 and response.mimetype == "text/html"
    api = user_client.get("/chat/api/nothing")
    assert api.status_code == 404 and api.mimetype == "application/json" and "error" in api.get_json()
