"""The web chat in a real browser (docs/contract.md §9), answered by the bundled simulator.

An invited person signs up, chats, stops an answer, reloads; a second person
cannot see the first one's conversation; the page fits 390 px; model output
never runs as HTML. Screenshots at 1440 and 390 px, light and dark, go to
``test-artifacts/``.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from simulator.server import serve_in_subprocess
from tests.conftest import settings_env
from tests.e2e.conftest import ADMIN_PASSWORD, ADMIN_USER, ARTIFACTS
from tests.live import LiveServer

pytestmark = pytest.mark.browser

NDJSON = "application/x-ndjson"
QUICK = {"tokens": 12, "token_delay": 0.02}
SLOW = {"tokens": 2000, "token_delay": 0.05}  # 100 s: only Stop ends it
XSS_CORPUS = [
    '<img src=x onerror="window.__pwned=1">',
    "<script>window.__pwned=2</script>",
    "[click me](javascript:window.__pwned=3)",
    "[data](data:text/html,<script>window.__pwned=4</script>)",
    '<a href="javascript:window.__pwned=5">raw link</a>',
    "```html\n<img src=x onerror=window.__pwned=6>\n```",
    "**<svg onload=window.__pwned=7>**",
    "`<iframe srcdoc='<script>parent.__pwned=8</script>'>`",
]


@pytest.fixture(scope="module")
def simulator() -> Iterator[str]:
    """``python -m simulator`` on a free port; its URL."""
    handle = serve_in_subprocess(**QUICK)
    yield handle.url
    handle.stop()


@pytest.fixture(scope="module")
def db_path(tmp_path_factory) -> Path:
    """Where the live server keeps its SQLite database."""
    return tmp_path_factory.mktemp("chat-live")


@pytest.fixture(scope="module")
def live_server(db_path, simulator) -> Iterator[LiveServer]:
    """The real gateway in front of the simulator (overrides the conftest's backend-less one)."""
    env = settings_env(db_path, admin_user=ADMIN_USER, admin_password=ADMIN_PASSWORD, ollama_urls=simulator)
    server = LiveServer(env).start()
    yield server
    server.stop()


def configure(simulator: str, **changes) -> None:
    """Change the simulator's pace (tokens, delays) for the next answers."""
    httpx.post(f"{simulator}/_sim/config", json=changes, timeout=5).raise_for_status()


def invite(live_server: LiveServer) -> str:
    """A fresh registration token from the admin API."""
    created = httpx.post(
        f"{live_server.url}/api/admin/tokens", json={}, headers=admin_headers(live_server), timeout=10
    )
    assert created.status_code == 201, created.text
    return created.json()["token"]


def sign_up(page: Page, live_server: LiveServer, username: str) -> None:
    """Sign up through an invitation link and land on the home page."""
    page.goto(f"/auth/register?token={invite(live_server)}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(f"{username}-password-1")
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/account$"))


def open_chat(page: Page) -> None:
    """Go to the chat and wait until the models are listed."""
    page.goto("/chat")
    expect(page.get_by_label("Model").locator("option")).not_to_have_count(0)


def send(page: Page, text: str) -> None:
    """Type a message and press Enter."""
    page.get_by_label("Message").fill(text)
    page.get_by_label("Message").press("Enter")


def answered(page: Page, count: int) -> None:
    """Wait until ``count`` answers are shown and none is still streaming."""
    expect(page.locator('[data-role="assistant"]')).to_have_count(count)
    expect(page.locator(".chat-message.is-pending")).to_have_count(0)
    expect(page.get_by_role("button", name="Stop")).to_be_disabled()


@pytest.fixture
def context_factory(browser, live_server):
    """Browser contexts with a chosen viewport and colour scheme."""
    contexts = []

    def make(width: int = 1440, height: int = 900, scheme: str = "light"):
        context = browser.new_context(
            base_url=live_server.url, viewport={"width": width, "height": height}, color_scheme=scheme
        )
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


def shoot(page: Page, name: str) -> None:
    """A screenshot of the viewport under test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"chat-{name}.png"))


def admin_headers(live_server: LiveServer) -> dict[str, str]:
    """An admin's bearer token for the JSON admin API."""
    with httpx.Client(base_url=live_server.url, timeout=10) as client:
        token = client.post("/auth/token", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD})
        return {"Authorization": f"Bearer {token.json()['access_token']}"}


def log_rows(db_path: Path, username: str) -> list[sqlite3.Row]:
    """The request-log rows of one user."""
    with sqlite3.connect(db_path / "seadragon.db") as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(
            "SELECT r.* FROM request_log r JOIN users u ON u.id = r.user_id WHERE u.username = ?", (username,)
        ).fetchall()


def test_an_invited_person_chats_stops_reloads_and_keeps_it_private(
    context_factory, live_server, simulator, db_path
):
    configure(simulator, **QUICK)
    page = context_factory().new_page()
    sign_up(page, live_server, "erin")
    expect(page.get_by_role("link", name="Open the chat")).to_be_visible()
    open_chat(page)
    expect(page.get_by_role("button", name="New chat")).to_be_visible()
    expect(page.get_by_role("button", name="Stop")).to_be_disabled()

    # Shift+Enter adds a line; Enter sends.
    box = page.get_by_label("Message")
    box.fill("first line")
    box.press("Shift+Enter")
    box.press_sequentially("second line")
    assert box.input_value() == "first line\nsecond line"
    box.press("Enter")
    user = page.locator('[data-role="user"]')
    assistant = page.locator('[data-role="assistant"]')
    expect(user).to_have_count(1)
    expect(user.first).to_contain_text("first line")
    answered(page, 1)
    expect(assistant.first).not_to_be_empty()
    expect(page.locator("#chat-title")).to_have_text("first line second line")
    answer = assistant.first.locator(".chat-body").inner_text()

    # Stop: the partial answer stays, the upstream closes within a second.
    configure(simulator, **SLOW)
    send(page, "tell me a long story")
    expect(assistant.nth(1)).not_to_be_empty()
    page.get_by_role("button", name="Stop").click()
    stopped_at = time.monotonic()
    while httpx.get(f"{simulator}/_sim/stats", timeout=5).json()["active_inference"]:
        assert time.monotonic() - stopped_at < 3.0, "the upstream generation was not closed"
        time.sleep(0.05)
    expect(assistant.nth(1)).to_contain_text("Stopped.")
    partial = assistant.nth(1).locator(".chat-body").inner_text()
    assert partial.strip()
    configure(simulator, **QUICK)

    # A reload (and so another browser of the same user) shows it all again, from the server.
    page.reload()
    expect(assistant).to_have_count(2)
    expect(assistant.first.locator(".chat-body")).to_have_text(answer)
    expect(assistant.nth(1)).to_contain_text("Stopped.")
    # The server keeps what Ollama sent until the stop reached it: at least what was shown.
    assert assistant.nth(1).locator(".chat-body").inner_text().strip().startswith(partial.strip())

    # One request-log row per answer, as web_chat, holding no prompt or answer text.
    # (The page's own model list, /api/tags, leaves rows of its own: wait for the two answers'.)
    deadline = time.monotonic() + 10
    while True:
        chats = [row for row in log_rows(db_path, "erin") if row["endpoint"] == "/api/chat"]
        if len(chats) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(chats) == 2
    assert {row["source"] for row in chats} == {"web_chat"}
    assert sorted(row["status"] for row in chats) == [200, 499]
    for row in log_rows(db_path, "erin"):
        assert "long story" not in " ".join(str(value) for value in tuple(row))

    # Nobody else can read it: another user's list is empty and the API says 404.
    conversation_id = re.search(r"c=(\d+)", page.url).group(1)
    other = context_factory().new_page()
    sign_up(other, live_server, "fred")
    open_chat(other)
    expect(other.locator("#chat-list li")).to_have_count(0)
    response = other.request.get(f"/chat/api/conversations/{conversation_id}")
    assert response.status == 404
    other.goto(f"/chat?c={conversation_id}")
    expect(other.locator('[data-role="user"]')).to_have_count(0)


def test_rename_delete_and_export(context_factory, live_server, simulator):
    configure(simulator, **QUICK)
    page = context_factory().new_page()
    sign_up(page, live_server, "gina")
    open_chat(page)
    send(page, "hello there")
    answered(page, 1)
    page.once("dialog", lambda dialog: dialog.accept("Greetings"))
    page.get_by_role("button", name="Rename").click()
    expect(page.locator("#chat-list")).to_contain_text("Greetings")
    with page.expect_download() as download:
        page.get_by_role("link", name="Export").click()
    text = Path(download.value.path()).read_text()
    assert text.startswith("# Greetings") and "hello there" in text
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete").click()
    expect(page.locator("#chat-list li")).to_have_count(0)
    page.reload()
    expect(page.locator('[data-role="user"]')).to_have_count(0)


def test_a_waiting_answer_shows_its_place_and_stop_leaves_the_queue(context_factory, live_server, simulator):
    configure(simulator, **SLOW)
    holder = context_factory().new_page()
    sign_up(holder, live_server, "lena")
    open_chat(holder)
    send(holder, "hold the only slot")
    expect(holder.locator('[data-role="assistant"]').first).not_to_be_empty()
    page = context_factory().new_page()
    sign_up(page, live_server, "mo")
    open_chat(page)
    send(page, "me next")
    # The place, and the scheduler's estimate once an earlier answer on this server was timed (eta_s).
    status = re.compile(r"^Waiting in the queue: position 1(, about \d+ s)?\.$")
    expect(page.locator("#chat-status")).to_have_text(status)
    expect(page.locator("#chat-title")).to_have_text("me next")  # listed while it waits
    expect(page.locator("#chat-list li")).to_have_count(1)
    shoot(page, "queued")
    page.get_by_role("button", name="Stop").click()
    expect(page.locator('[data-role="assistant"]').first).to_contain_text("Stopped.")
    headers, deadline = admin_headers(live_server), time.monotonic() + 3
    while httpx.get(f"{live_server.url}/api/admin/stats", headers=headers, timeout=5).json()["queue_length"]:
        assert time.monotonic() < deadline, "the stopped answer stayed in the queue"
        time.sleep(0.05)
    holder.get_by_role("button", name="Stop").click()
    answered(holder, 1)
    configure(simulator, **QUICK)


@pytest.mark.parametrize(("eta_s", "shown"), [(42.4, "about 42 s"), (600, "about 10 min")])
def test_the_queue_estimate_is_shown_when_the_gateway_sends_one(context_factory, live_server, eta_s, shown):
    # The gateway sends eta_s null until the scheduler publishes an estimate; this drives the page
    # with the event it will send then (the browser's fetch of the reply is answered by the test).
    page = context_factory().new_page()
    sign_up(page, live_server, f"nia{int(eta_s)}")
    open_chat(page)
    event = {"type": "queued", "position": 3, "eta_s": eta_s}
    line = json.dumps(event) + "\n"
    page.route(
        "**/chat/api/reply", lambda route: route.fulfill(content_type="application/x-ndjson", body=line)
    )
    send(page, "when is it my turn?")
    expect(page.locator("#chat-status")).to_have_text(f"Waiting in the queue: position 3, {shown}.")


def test_the_renderer_never_runs_html_from_the_model(context_factory, live_server):
    page = context_factory().new_page()
    sign_up(page, live_server, "hana")
    open_chat(page)
    # The same function the chat renders answers with, fed the corpus directly.
    page.evaluate(
        """corpus => {
            const box = document.getElementById('chat-messages');
            for (const text of corpus) box.appendChild(window.renderMarkdown(text));
        }""",
        XSS_CORPUS,
    )
    page.wait_for_timeout(300)
    assert page.evaluate("window.__pwned") is None
    messages = page.locator("#chat-messages")
    for tag in ("img", "script", "svg", "iframe"):
        expect(messages.locator(tag)).to_have_count(0)
    hrefs = messages.locator("a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert all(href.startswith(("http://", "https://", "mailto:")) for href in hrefs)
    expect(messages.locator(".code-block code")).to_contain_text("<img src=x onerror=")
    # Safe Markdown still renders.
    page.evaluate(
        "() => document.getElementById('chat-messages').appendChild("
        "window.renderMarkdown('**bold** and [a link](https://example.com)\\n\\n```py\\nprint(1)\\n```'))"
    )
    expect(messages.locator("strong", has_text="bold")).to_have_count(1)
    expect(messages.locator('a[href="https://example.com"]')).to_have_count(1)
    expect(messages.get_by_role("button", name="Copy")).not_to_have_count(0)


def test_model_output_with_html_never_runs_in_the_chat(context_factory, live_server, simulator):
    # The simulator answers "!say TEXT" with exactly TEXT ("\\n" as a newline).
    configure(simulator, **QUICK)
    page = context_factory().new_page()
    sign_up(page, live_server, "ivan")
    open_chat(page)
    for number, text in enumerate(XSS_CORPUS, 1):
        send(page, "!say " + text.replace("\n", "\\n"))
        answered(page, number)
    assert page.evaluate("window.__pwned") is None
    messages = page.locator("#chat-messages")
    for tag in ("img", "script", "svg", "iframe"):
        expect(messages.locator(tag)).to_have_count(0)
    answers = page.locator('[data-role="assistant"] .chat-body')
    # The model's HTML arrived and is shown as the text it is.
    expect(answers.nth(0)).to_have_text(XSS_CORPUS[0])
    expect(answers.nth(1)).to_have_text(XSS_CORPUS[1])
    expect(answers.nth(5).locator(".code-block code")).to_contain_text("<img src=x onerror=window.__pwned=6>")
    shoot(page, "model-html")


def assert_fits(page: Page, width: int) -> None:
    """No sideways scroll: the page is no wider than the viewport."""
    scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll <= inner, f"{page.url} is {scroll}px wide in a {inner}px viewport ({width})"


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [1440, 390])
def test_the_pages_fit_the_screen_in_both_schemes(context_factory, live_server, simulator, width, scheme):
    configure(simulator, **QUICK)
    page = context_factory(width=width, height=844 if width == 390 else 900, scheme=scheme).new_page()
    sign_up(page, live_server, f"jo{width}{scheme}")
    assert_fits(page, width)
    shoot(page, f"account-{width}-{scheme}")
    open_chat(page)
    send(page, "Show me some Markdown with code, please, in a long enough message to wrap at 390 pixels")
    answered(page, 1)
    page.evaluate(
        "() => document.querySelector('[data-role=assistant] .chat-body').replaceChildren("
        "window.renderMarkdown('Here is **a list**:\\n\\n- one\\n- two with `code`\\n\\n"
        '```python\\nprint("a fairly long line of code that must scroll inside its own box")\\n```\'))'
    )
    assert_fits(page, width)
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(page.get_by_label("Model")).to_be_visible()
    if scheme == "dark":
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background != "rgb(243, 246, 248)"  # the light page colour
    shoot(page, f"chat-{width}-{scheme}")


def test_a_browser_at_the_root_goes_to_the_chat_or_the_login_page(context_factory, live_server):
    page = context_factory().new_page()
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/auth/login\?next=(%2F|/)chat$"))
    response = page.goto("/no-such-page")
    assert response.status == 404 and "text/html" in response.headers["content-type"]
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    shoot(page, "404")
    sign_up(page, live_server, "kim")
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/chat$"))
    assert httpx.get(live_server.url + "/").json() == {"message": "Seadragon LLM Server"}
