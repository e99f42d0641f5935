"""The web chat's streaming endpoint and the browser's root and 404s (docs/contract.md §9)."""

from __future__ import annotations

import json
import time

import httpx
import jinja2
import pytest
import sqlalchemy as sa

from common.db import make_sessionmaker, make_sync_engine
from common.models import ChatMessage, Conversation, User
from common.sessions import (
    SESSION_COOKIE_NAME,
    SESSION_LIFETIME_SECONDS,
    csrf_token_valid,
    read_session_cookie,
)
from proxy_app import TEMPLATES
from proxy_app.pages import NOT_FOUND
from tests.proxy.support import AdminApp, Browser, log_rows
from tests.waiting import wait_until

pytestmark = pytest.mark.costly  # each test serves the gateway on a real socket

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


@pytest.fixture
def world(gw_settings, accounts, serve, admin_app):
    """A gateway in front of the simulator; users bob and carol and an admin alice."""
    settings = gw_settings()
    db = accounts(settings)
    ids = {name: db.user(name, admin=name == "alice") for name in ("alice", "bob", "carol")}
    server = serve(settings)
    admin = admin_app(settings)
    return settings, server, admin, ids


def stored(settings, conversation_id: int) -> list[ChatMessage]:
    """A conversation's messages as stored."""
    engine = make_sync_engine(settings.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            query = sa.select(ChatMessage).where(ChatMessage.conversation_id == conversation_id)
            return list(session.scalars(query.order_by(ChatMessage.id)))
    finally:
        engine.dispose()


def reply(server, browser: Browser, conversation_id: int, content: str, **headers) -> httpx.Response:
    """POST the reply endpoint and read the whole NDJSON answer."""
    body = {"conversation_id": conversation_id, "content": content, "model": "llama3.2"}
    return httpx.post(
        server.url + "/chat/api/reply", json=body, headers={**browser.headers(), **headers}, timeout=30
    )


def events(response: httpx.Response) -> list[dict]:
    """The NDJSON events of a reply."""
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def test_a_reply_streams_tokens_stores_both_turns_and_logs_one_web_chat_row(world):
    settings, server, admin, ids = world
    bob = Browser(admin, "bob")
    conversation_id = bob.new_conversation()
    response = reply(server, bob, conversation_id, "Why is the sea blue?\nTell me briefly.")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert response.headers["X-Seadragon-Source"] == "web_chat"
    got = events(response)
    tokens = "".join(e["content"] for e in got if e["type"] == "token")
    assert tokens and got[-1]["type"] == "done" and got[-1]["status"] == "complete"
    user, assistant = stored(settings, conversation_id)
    assert (user.role, user.content) == ("user", "Why is the sea blue?\nTell me briefly.")
    assert (assistant.role, assistant.content, assistant.status) == ("assistant", tokens, "complete")
    assert got[-1]["message_id"] == assistant.id
    listed = bob.client.get("/chat/api/conversations").get_json()
    assert listed[0]["title"] == "Why is the sea blue? Tell me briefly."  # the first message, no generation
    rows = wait_until(lambda: log_rows(settings) or None)
    assert len(rows) == 1
    row = rows[0]
    assert (row.source, row.user_id, row.endpoint, row.status) == ("web_chat", ids["bob"], "/api/chat", 200)
    assert row.completion_tokens and row.prompt_tokens
    assert "sea" not in " ".join(str(value) for value in row)  # no prompt in the request log


def test_the_second_turn_sends_the_whole_conversation(world, sim):
    settings, server, admin, _ = world
    bob = Browser(admin, "bob")
    conversation_id = bob.new_conversation()
    first = events(reply(server, bob, conversation_id, "first question"))
    sim.reset()
    reply(server, bob, conversation_id, "second question")
    sent = [entry for entry in sim.stats()["log"] if entry["path"] == "/api/chat"]
    assert len(sent) == 1
    answer = "".join(e["content"] for e in first if e["type"] == "token")
    assert sent[0]["body"]["messages"] == [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "second question"},
    ]
    assert [m.role for m in stored(settings, conversation_id)] == ["user", "assistant"] * 2


def test_it_refuses_without_a_session_or_with_a_wrong_csrf_token(world):
    settings, server, admin, _ = world
    bob = Browser(admin, "bob")
    conversation_id = bob.new_conversation()
    body = {"conversation_id": conversation_id, "content": "hi", "model": "llama3.2"}
    anonymous = httpx.post(server.url + "/chat/api/reply", json=body, timeout=10)
    assert anonymous.status_code == 401 and "error" in anonymous.json()
    no_token = httpx.post(
        server.url + "/chat/api/reply",
        json=body,
        headers={"Cookie": f"{SESSION_COOKIE_NAME}={bob.cookie}"},
        timeout=10,
    )
    assert no_token.status_code == 400 and "CSRF" in no_token.json()["error"]
    carol = Browser(admin, "carol")
    crossed = reply(server, bob, conversation_id, "hi", **{"X-CSRFToken": carol.csrf})
    assert crossed.status_code == 400
    assert stored(settings, conversation_id) == []
    assert log_rows(settings) == []


def test_nobody_else_may_reply_in_a_conversation_admins_included(world):
    settings, server, admin, _ = world
    bob = Browser(admin, "bob")
    conversation_id = bob.new_conversation()
    for name in ("carol", "alice"):
        response = reply(server, Browser(admin, name), conversation_id, "let me in")
        assert response.status_code == 404
        assert response.json() == {"error": "conversation not found"}
    assert stored(settings, conversation_id) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"content": "   "}, "content must be a non-empty string"),
        ({"model": None}, "model is required"),
        ({"conversation_id": "1"}, "conversation_id must be a positive whole number"),
        ({"conversation_id": 10**23}, "conversation_id must be a positive whole number"),  # §16: past 2^63
    ],
)
def test_bad_input_is_a_clear_400(world, change, message):
    _, server, admin, _ = world
    bob = Browser(admin, "bob")
    body = {"conversation_id": bob.new_conversation(), "content": "hi", "model": "llama3.2", **change}
    response = httpx.post(server.url + "/chat/api/reply", json=body, headers=bob.headers(), timeout=10)
    assert response.status_code == 400 and response.json() == {"error": message}


def test_an_unknown_model_is_stored_as_a_broken_answer(world):
    settings, server, admin, _ = world
    bob = Browser(admin, "bob")
    conversation_id = bob.new_conversation()
    body = {"conversation_id": conversation_id, "content": "hi", "model": "no-such-model"}
    response = httpx.post(server.url + "/chat/api/reply", json=body, headers=bob.headers(), timeout=10)
    done = events(response)[-1]
    assert done["type"] == "done" and done["status"] == "error" and "not found" in done["error"]
    assert stored(settings, conversation_id)[-1].status == "error"


def test_the_csrf_check_matches_flask_wtf(world):
    settings, _, admin, _ = world
    bob = Browser(admin, "bob")
    session = read_session_cookie(bob.cookie, settings.secret_key)
    assert csrf_token_valid(bob.csrf, session, settings.secret_key, SESSION_LIFETIME_SECONDS)
    assert not csrf_token_valid(bob.csrf + "x", session, settings.secret_key, SESSION_LIFETIME_SECONDS)
    assert not csrf_token_valid(bob.csrf, {}, settings.secret_key, SESSION_LIFETIME_SECONDS)
    assert not csrf_token_valid(bob.csrf, session, "another secret", SESSION_LIFETIME_SECONDS)


def test_a_browser_at_the_root_is_sent_on_and_other_clients_get_json(world):
    _, server, admin, _ = world
    signed_out = httpx.get(server.url + "/", headers=HTML)
    assert signed_out.status_code == 302 and signed_out.headers["location"] == "/auth/login?next=%2Fchat"
    bob = Browser(admin, "bob")
    signed_in = httpx.get(server.url + "/", headers={**HTML, "Cookie": f"{SESSION_COOKIE_NAME}={bob.cookie}"})
    assert signed_in.status_code == 302 and signed_in.headers["location"] == "/chat"
    for accept in (None, "application/json", "*/*"):
        response = httpx.get(server.url + "/", headers={"Accept": accept} if accept else {})
        assert response.json() == {"message": "Seadragon LLM Server"}


def test_unknown_paths_are_a_page_for_browsers_and_json_for_the_api(world):
    _, server, _, _ = world
    page = httpx.get(server.url + "/nothing-here", headers=HTML)
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "Page not found" in page.text
    # The page is the template's (templates/errors/gateway.html), not a string in the code.
    templates = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    assert page.text == templates.get_template("errors/gateway.html").render(**NOT_FOUND)
    assert httpx.get(server.url + "/nothing-here").json() == {"error": "not found"}
    for path in ("/api/nothing", "/v1/nothing"):
        response = httpx.get(server.url + path, headers=HTML)
        assert response.status_code == 404 and response.headers["content-type"] == "application/json"


def test_conversations_table_is_the_only_place_prompts_live(world):
    settings, server, admin, _ = world
    bob = Browser(admin, "bob")
    conversation_id = bob.new_conversation()
    reply(server, bob, conversation_id, "a secret prompt 7731")
    engine = make_sync_engine(settings.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            conversation = session.get(Conversation, conversation_id)
            assert conversation.title == "a secret prompt 7731"
    finally:
        engine.dispose()
    rows = wait_until(lambda: log_rows(settings) or None)
    assert all("7731" not in " ".join(str(value) for value in row) for row in rows)


class OpenReply:
    """A reply stream read event by event, kept open until :meth:`stop` (as a browser's fetch)."""

    def __init__(self, server, browser: Browser, conversation_id: int, content: str) -> None:
        self.server, self.browser, self.conversation_id = server, browser, conversation_id
        self.client = httpx.Client(timeout=30)
        body = {"conversation_id": conversation_id, "content": content, "model": "llama3.2"}
        url = server.url + "/chat/api/reply"
        request = self.client.build_request("POST", url, json=body, headers=browser.headers())
        self.response = self.client.send(request, stream=True)
        # One iterator for the whole stream: dropping an httpx line iterator closes the connection.
        self.lines = self.response.iter_lines()
        self.seen: list[dict] = []

    def until(self, wanted: str) -> dict:
        """Read events up to the first of type ``wanted``."""
        for line in self.lines:
            if line.strip():
                self.seen.append(json.loads(line))
                if self.seen[-1]["type"] == wanted:
                    return self.seen[-1]
        raise AssertionError(f"no {wanted!r} event in {self.seen}")

    def stop(self) -> httpx.Response:
        """Press Stop: ``POST /chat/api/reply/stop`` (docs/contract.md §14), then stop reading."""
        stopped = httpx.post(
            self.server.url + "/chat/api/reply/stop",
            json={"conversation_id": self.conversation_id},
            headers=self.browser.headers(),
            timeout=10,
        )
        self.leave()
        return stopped

    def leave(self) -> None:
        """Stop reading, as a page does when it is left (another conversation, reload, closed tab)."""
        self.response.close()
        self.client.close()


def test_stop_while_streaming_closes_the_upstream_and_keeps_the_partial_answer(world, sim):
    settings, server, admin, _ = world
    sim.configure(tokens=2000, token_delay=0.02)
    bob = Browser(admin, "bob")
    conversation_id = bob.new_conversation()
    story = OpenReply(server, bob, conversation_id, "a long story")
    story.until("token")
    time.sleep(0.3)
    assert sim.stats()["active_inference"] == 1
    started = time.monotonic()
    stopped = story.stop()
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
    sim.wait_for(lambda stats: stats["active_inference"] == 0, timeout=5)
    assert time.monotonic() - started < 1.5  # the contract's 1 s, with a margin for a loaded machine
    message = stored(settings, conversation_id)[1]  # stored before Stop answers
    assert message.status == "stopped" and message.content.startswith(story.seen[-1]["content"])
    row = wait_until(lambda: log_rows(settings) or None)[0]
    assert (row.status, row.stage, row.source) == (499, "streaming", "web_chat")


def queued_behind_another(server, admin: AdminApp, sim) -> tuple[OpenReply, OpenReply, int]:
    """bob's long answer holds the one slot; carol's reply waits behind it (and its conversation id)."""
    sim.configure(tokens=2000, token_delay=0.02)
    bob, carol = Browser(admin, "bob"), Browser(admin, "carol")
    holder = OpenReply(server, bob, bob.new_conversation(), "hold the slot")
    holder.until("token")
    waiting_id = carol.new_conversation()
    return holder, OpenReply(server, carol, waiting_id, "me next"), waiting_id


def test_a_waiting_reply_shows_its_place_and_leaves_the_queue_when_stopped(world, sim):
    settings, server, admin, _ = world
    holder, waiting, waiting_id = queued_behind_another(server, admin, sim)
    assert waiting.until("queued") == {"type": "queued", "position": 1, "eta_s": None}
    assert server.snapshot()["queue_length"] == 1
    stopped = time.monotonic()
    waiting.stop()
    wait_until(lambda: server.snapshot()["queue_length"] == 0, timeout=5)
    assert time.monotonic() - stopped < 1.5
    message = wait_until(lambda: (stored(settings, waiting_id) + [None])[1])
    assert (message.status, message.content) == ("stopped", "")
    holder.stop()


def test_a_waiting_reply_s_eta_comes_from_the_scheduler_once_an_answer_was_timed(world, sim):
    # docs/contract.md §9: eta_s is the scheduler's estimate (docs/contract.md §8), null until it has one.
    _, server, admin, _ = world
    sim.configure(tokens=3, token_delay=0.01)
    bob = Browser(admin, "bob")
    assert events(reply(server, bob, bob.new_conversation(), "a short one"))[-1]["status"] == "complete"
    holder, waiting, _ = queued_behind_another(server, admin, sim)
    queued = waiting.until("queued")
    assert queued["position"] == 1
    assert isinstance(queued["eta_s"], int) and queued["eta_s"] >= 1
    waiting.stop()
    holder.stop()


def test_the_page_s_own_origin_is_welcome_and_a_foreign_one_is_refused(world):
    settings, server, admin, _ = world
    bob = Browser(admin, "bob")
    conversation_id = bob.new_conversation()
    foreign = reply(server, bob, conversation_id, "hi", Origin="https://evil.example")
    assert foreign.status_code == 403 and foreign.json() == {"error": "origin not allowed"}
    assert stored(settings, conversation_id) == []
    own = reply(server, bob, conversation_id, "hi", Origin=server.url)
    assert own.status_code == 200 and events(own)[-1]["status"] == "complete"


def test_a_waiting_reply_is_refused_when_its_user_is_signed_out_everywhere(world, sim, accounts):
    # The reply queues with its session principal, so the gateway re-checks it at each identity refresh.
    settings, server, admin, ids = world
    holder, waiting, waiting_id = queued_behind_another(server, admin, sim)
    waiting.until("queued")
    accounts(settings).end_sessions(ids["carol"])
    ended_at = time.monotonic()
    done = waiting.until("done")
    assert time.monotonic() - ended_at < 2.0  # the contract's 1 s, with a margin for a loaded machine
    assert done["status"] == "error" and done["error"]
    assert server.snapshot()["queue_length"] == 0
    waiting.leave()
    holder.stop()
    message = stored(settings, waiting_id)[-1]
    assert (message.role, message.status, message.content) == ("assistant", "error", "")
    rows = wait_until(lambda: [row for row in log_rows(settings) if row.user_id == ids["carol"]] or None)
    assert len(rows) == 1 and rows[0].status == 401 and rows[0].stage == "queued"
    assert rows[0].client_ip  # the row keeps the address the chat's principal leaves out


def test_the_chat_obeys_the_user_s_policy_like_any_request(gw_settings, accounts, serve, admin_app):
    # docs/contract.md §9: the chat goes through the same policy as any request (§7).
    settings = gw_settings(WEBCHAT_RPM="1")
    db = accounts(settings)
    user_id = db.user("bob")
    with db.sessions.begin() as session:
        session.execute(sa.update(User).where(User.id == user_id).values(models=["mistral*"]))
    server = serve(settings)
    bob = Browser(admin_app(settings), "bob")
    conversation = bob.new_conversation()

    refused = reply(server, bob, conversation, "hello")
    assert refused.status_code == 403
    assert refused.json() == {"error": "model 'llama3.2' is not allowed for this account"}
    assert stored(settings, conversation) == []  # a refused turn is not kept

    body = {"conversation_id": conversation, "content": "hello", "model": "mistral"}
    first = httpx.post(server.url + "/chat/api/reply", json=body, headers=bob.headers(), timeout=30)
    assert first.status_code == 200 and events(first)[-1]["type"] == "done"
    second = httpx.post(server.url + "/chat/api/reply", json=body, headers=bob.headers(), timeout=30)
    assert second.status_code == 429 and int(second.headers["Retry-After"]) >= 1
    assert [message.role for message in stored(settings, conversation)] == ["user", "assistant"]


def test_leaving_never_stops_a_reply_it_completes_and_coming_back_follows_its_tail(world, sim):
    # docs/contract.md §14: a reply belongs to the conversation, not to the page.
    settings, server, admin, _ = world
    sim.configure(tokens=60, token_delay=0.03)
    bob = Browser(admin, "bob")
    conversation_id = bob.new_conversation()
    story = OpenReply(server, bob, conversation_id, "a story")
    story.until("token")
    story.leave()  # another conversation, a reload, a closed tab
    time.sleep(0.3)
    assert sim.stats()["active_inference"] == 1  # still generating
    assert stored(settings, conversation_id)[1].status == "streaming"
    with httpx.Client(timeout=30) as client:
        url = f"{server.url}/chat/api/reply/{conversation_id}"
        with client.stream("GET", url, headers=bob.headers()) as followed:
            assert followed.status_code == 200
            got = [json.loads(line) for line in followed.iter_lines() if line.strip()]
    # What was said so far as one event, then the live tail, then done.
    said = "".join(e["content"] for e in got if e["type"] == "token")
    assert got[-1]["type"] == "done" and got[-1]["status"] == "complete"
    answer = stored(settings, conversation_id)[1]
    assert (answer.status, answer.content) == ("complete", said)
    assert said.startswith(story.seen[-1]["content"])
    gone = httpx.get(f"{server.url}/chat/api/reply/{conversation_id}", headers=bob.headers(), timeout=10)
    assert gone.status_code == 204  # nothing is being written any more
    row = wait_until(lambda: log_rows(settings) or None)[0]
    assert (row.status, row.source) == (200, "web_chat")


def test_only_its_owner_may_follow_or_stop_a_reply(world, sim):
    _, server, admin, _ = world
    sim.configure(tokens=2000, token_delay=0.02)
    bob, carol = Browser(admin, "bob"), Browser(admin, "carol")
    conversation_id = bob.new_conversation()
    story = OpenReply(server, bob, conversation_id, "mine")
    story.until("token")
    peek = httpx.get(f"{server.url}/chat/api/reply/{conversation_id}", headers=carol.headers(), timeout=10)
    assert peek.status_code == 204
    stop = httpx.post(
        server.url + "/chat/api/reply/stop",
        json={"conversation_id": conversation_id},
        headers=carol.headers(),
        timeout=10,
    )
    assert stop.status_code == 404
    assert sim.stats()["active_inference"] == 1
    no_csrf = httpx.post(
        server.url + "/chat/api/reply/stop",
        json={"conversation_id": conversation_id},
        headers={"Cookie": bob.headers()["Cookie"]},
        timeout=10,
    )
    assert no_csrf.status_code == 400
    assert story.stop().status_code == 200


def test_regenerate_and_edit_replace_the_last_answer_and_question(world, sim):
    settings, server, admin, _ = world
    sim.configure(tokens=5, token_delay=0.0)
    bob = Browser(admin, "bob")
    conversation_id = bob.new_conversation()
    events(reply(server, bob, conversation_id, "first question"))
    events(reply(server, bob, conversation_id, "second question"))
    sim.reset()
    body = {"conversation_id": conversation_id, "model": "llama3.2", "turn": "regenerate"}
    again = httpx.post(server.url + "/chat/api/reply", json=body, headers=bob.headers(), timeout=30)
    assert events(again)[-1]["status"] == "complete"
    sent = [entry for entry in sim.stats()["log"] if entry["path"] == "/api/chat"][0]["body"]["messages"]
    assert [m["content"] for m in sent if m["role"] == "user"] == ["first question", "second question"]
    assert sent[-1] == {"role": "user", "content": "second question"}
    messages = stored(settings, conversation_id)
    assert [(m.role, m.status) for m in messages] == [("user", "complete"), ("assistant", "complete")] * 2
    edit = {**body, "turn": "edit", "content": "second question, better"}
    edited = httpx.post(server.url + "/chat/api/reply", json=edit, headers=bob.headers(), timeout=30)
    assert events(edited)[-1]["status"] == "complete"
    messages = stored(settings, conversation_id)
    assert [m.content for m in messages if m.role == "user"] == ["first question", "second question, better"]
    assert len(messages) == 4
    fresh = bob.new_conversation()
    nothing = httpx.post(
        server.url + "/chat/api/reply",
        json={**body, "conversation_id": fresh},
        headers=bob.headers(),
        timeout=10,
    )
    assert nothing.status_code == 409 and "no question" in nothing.json()["error"]
