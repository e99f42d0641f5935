"""A reply belongs to the conversation, not to the page (docs/contract.md §14), in a real browser.

Leaving (New chat, another conversation, a reload) never stops a reply: it completes on the server,
and coming back shows it with its live tail. Stop stops it within a second and hands the focus back
to the box. Regenerate, Edit, Copy; refusals in words; Markdown tables; touch keyboards and the
phone drawer. Screenshots at 1440 and 390 px under ``test-artifacts/screens/``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect

from simulator.server import serve_in_subprocess
from tests.conftest import settings_env
from tests.e2e.conftest import ADMIN_PASSWORD, ADMIN_USER
from tests.e2e.panel_support import DESKTOP, PHONE, SCREENS, admin_api
from tests.live import LiveServer

pytestmark = pytest.mark.browser

QUICK = {"tokens": 8, "token_delay": 0.01}
STEADY = {"tokens": 120, "token_delay": 0.05}  # 6 s: long enough to leave and come back


@pytest.fixture(scope="module")
def simulator() -> Iterator[str]:
    handle = serve_in_subprocess(**QUICK)
    yield handle.url
    handle.stop()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory, simulator) -> Iterator[LiveServer]:
    """The real gateway in front of the simulator (overrides the conftest's backend-less one)."""
    env = settings_env(
        tmp_path_factory.mktemp("replies"),
        admin_user=ADMIN_USER,
        admin_password=ADMIN_PASSWORD,
        ollama_urls=simulator,
    )
    server = LiveServer(env).start()
    yield server
    server.stop()


def configure(simulator: str, **changes) -> None:
    httpx.post(f"{simulator}/_sim/config", json=changes, timeout=5).raise_for_status()


def generating(simulator: str) -> int:
    return httpx.get(f"{simulator}/_sim/stats", timeout=5).json()["active_inference"]


def person(new_page, live_server: LiveServer, username: str, **options) -> Page:
    """A new person, signed up through an invitation, on the chat page with the models listed."""
    page = new_page(**options)
    with admin_api(live_server) as api:
        token = api.post("/api/admin/tokens", json={}).json()["token"]
    page.goto(f"/auth/register?token={token}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(f"{username}-password-1")
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/account$"))
    page.goto("/chat")
    expect(page.get_by_label("Model").locator("option")).not_to_have_count(0)
    return page


def ask(page: Page, text: str) -> None:
    page.get_by_label("Message").fill(text)
    page.get_by_role("button", name="Send").click()


def settled(page: Page, answers: int, timeout: float = 10_000) -> None:
    expect(page.locator('[data-role="assistant"]')).to_have_count(answers)
    expect(page.locator(".chat-message.is-pending")).to_have_count(0, timeout=timeout)


def test_a_reply_is_kept_when_the_page_leaves_and_shown_live_on_return(new_page, live_server, simulator):
    configure(simulator, **STEADY)
    page = person(new_page, live_server, "olga")
    page.set_viewport_size(DESKTOP)
    ask(page, "tell me about seadragons")
    answer = page.locator('[data-role="assistant"] .chat-body').first
    expect(answer).not_to_be_empty()
    page.get_by_role("button", name="New chat").click()  # leave while it streams
    expect(page.locator('[data-role="assistant"]')).to_have_count(0)
    time.sleep(0.5)
    assert generating(simulator) == 1  # the server goes on writing it
    page.locator("#chat-list a").first.click()  # come back: what was said, then the live tail
    expect(page.locator(".chat-message.is-pending")).to_have_count(1)
    first_look = page.locator('[data-role="assistant"] .chat-body').first.inner_text()
    expect(page.locator('[data-role="assistant"] .chat-body').first).not_to_have_text(first_look)  # it grows
    page.reload()  # a reload neither
    expect(page.locator('[data-role="assistant"]')).to_have_count(1)
    settled(page, 1, timeout=30_000)
    expect(page.locator('[data-role="assistant"]').first).not_to_contain_text("Stopped.")
    done = page.locator('[data-role="assistant"] .chat-body').first.inner_text()
    assert done.startswith(first_look.strip()[:20])
    conversation_id = re.search(r"c=(\d+)", page.url)[1]
    stored = page.request.get(f"/chat/api/conversations/{conversation_id}").json()
    assert stored["messages"][-1]["status"] == "complete"
    for label, viewport in (("1440", DESKTOP), ("390", PHONE)):
        page.set_viewport_size(viewport)
        page.wait_for_timeout(400)  # the drawer's and the layout's transitions end
        SCREENS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENS / f"chat-kept-{label}.png"), full_page=True)
    configure(simulator, **QUICK)


def test_stop_stops_within_a_second_and_gives_the_box_the_focus(new_page, live_server, simulator):
    configure(simulator, tokens=2000, token_delay=0.02)
    page = person(new_page, live_server, "pia")
    ask(page, "a very long story")
    expect(page.locator('[data-role="assistant"] .chat-body').first).not_to_be_empty()
    page.get_by_role("button", name="Stop").click()
    pressed = time.monotonic()
    while generating(simulator):
        assert time.monotonic() - pressed < 1.5, "the upstream generation was not closed"
        time.sleep(0.05)
    expect(page.locator('[data-role="assistant"]').first).to_contain_text("Stopped.")
    expect(page.get_by_label("Message")).to_be_focused()
    configure(simulator, **QUICK)


def test_regenerate_edit_and_copy(new_page, live_server, simulator):
    configure(simulator, **QUICK)
    page = person(new_page, live_server, "quin")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    ask(page, "!say first answer")
    settled(page, 1)
    expect(page.locator('[data-role="assistant"] .chat-body')).to_have_text("first answer")
    page.get_by_role("button", name="Regenerate").click()
    settled(page, 1)
    expect(page.locator('[data-role="user"]')).to_have_count(1)  # the same question, a new answer
    page.locator('[data-role="user"]').get_by_role("button", name="Edit").click()
    box = page.get_by_label("Message")
    expect(box).to_have_value("!say first answer")
    box.fill("!say edited answer")
    page.get_by_role("button", name="Send").click()
    settled(page, 1)
    expect(page.locator('[data-role="user"] .chat-body')).to_have_text("!say edited answer")
    expect(page.locator('[data-role="assistant"] .chat-body')).to_have_text("edited answer")
    page.locator('[data-role="assistant"]').get_by_role("button", name="Copy").click()
    expect(page.locator('[data-role="assistant"]').get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == "edited answer"
    ask(page, "!say ```\\nprint(1)\\n```")
    settled(page, 2)
    page.locator(".code-block").get_by_role("button", name="Copy").click()
    assert page.evaluate("navigator.clipboard.readText()") == "print(1)"
    page.reload()  # all of it is what the server keeps
    expect(page.locator('[data-role="user"] .chat-body').first).to_have_text("!say edited answer")


def test_markdown_tables_render_as_tables(new_page, live_server, simulator):
    configure(simulator, **QUICK)
    page = person(new_page, live_server, "rae")
    ask(page, "!say | Name | Fins |\\n|:---|---:|\\n| leafy | 2 |\\n| weedy | *3* |\\n\\nafter")
    settled(page, 1)
    table = page.locator('[data-role="assistant"] table')
    expect(table.locator("th")).to_have_text(["Name", "Fins"])
    expect(table.locator("tbody tr")).to_have_count(2)
    expect(table.locator("tbody td em")).to_have_text("3")
    assert table.locator("td").nth(1).evaluate("td => getComputedStyle(td).textAlign") == "right"
    expect(page.locator('[data-role="assistant"] p')).to_have_text("after")


def test_refusals_are_said_in_words(new_page, live_server, simulator):
    configure(simulator, **QUICK)
    page = person(new_page, live_server, "sol")
    with admin_api(live_server) as api:
        user = next(u for u in api.get("/api/admin/users").json() if u["username"] == "sol")
        assert api.patch(f"/api/admin/users/{user['id']}", json={"rpm": 1}).status_code == 200
    time.sleep(0.7)  # the gateway sees a policy change within a refresh
    ask(page, "!say one")
    settled(page, 1)
    ask(page, "!say two")
    status = page.locator("#chat-status")
    expect(status).to_have_text(
        re.compile(r"^You are sending faster than your limit allows\. Try again in \d+ seconds?\.$")
    )
    expect(page.get_by_label("Message")).to_have_value("!say two")  # nothing is lost
    expect(page.locator('[data-role="user"]')).to_have_count(1)
    page.route(
        "**/chat/api/reply",
        lambda route: route.fulfill(
            status=403, json={"error": "model 'llama3.2:latest' is not allowed for this account"}
        ),
    )
    page.get_by_role("button", name="Send").click()
    expect(status).to_have_text(
        "You may not use the model “llama3.2:latest”. Pick another one in the Model list."
    )


def test_a_backend_that_is_down_is_said_in_words(new_page, live_server):
    # The model list is answered as a gateway without a healthy backend answers it.
    page = new_page()
    page.route(
        "**/api/tags",
        lambda route: route.fulfill(status=503, json={"error": "no healthy Ollama backend"}),
    )
    with admin_api(live_server) as api:
        token = api.post("/api/admin/tokens", json={}).json()["token"]
    page.goto(f"/auth/register?token={token}")
    page.get_by_label("Username").fill("tom")
    page.get_by_label("Password").fill("tom-password-1")
    page.get_by_role("button", name="Create account").click()
    page.goto("/chat")
    status = page.locator("#chat-status")
    expect(status).to_have_text(re.compile(r"^The model server is not answering"))
    page.get_by_label("Message").fill("hello?")
    page.get_by_role("button", name="Send").click()
    expect(status).to_have_text(
        re.compile(r"^The model server is not answering, so there is no model to pick")
    )


def test_touch_keyboards_add_lines_and_targets_are_44_px(browser, live_server, simulator):
    configure(simulator, **QUICK)
    context = browser.new_context(base_url=live_server.url, viewport=PHONE, has_touch=True, is_mobile=True)
    try:
        page = person(lambda **_: context.new_page(), live_server, "uma")
        box = page.get_by_label("Message")
        box.fill("line one")
        box.press("Enter")
        box.press_sequentially("line two")
        assert box.input_value() == "line one\nline two"  # Enter on a touch keyboard adds a line
        expect(page.locator('[data-role="user"]')).to_have_count(0)
        height = box.evaluate("el => el.getBoundingClientRect().height")
        box.fill("\n".join(f"line {n}" for n in range(8)))
        box.dispatch_event("input")
        assert box.evaluate("el => el.getBoundingClientRect().height") > height  # the composer grows
        page.get_by_role("button", name="Send").click()
        settled(page, 1)
        small = page.evaluate(
            """() => [...document.querySelectorAll('.chat-page button, .chat-page select, .chat-list a')]
                .filter((el) => el.getClientRects().length && !el.closest('[inert]'))
                .map((el) => [el.textContent.trim() || el.id, el.getBoundingClientRect().height])
                .filter(([, h]) => h < 44)"""
        )
        assert small == []
        # The closed drawer is out of the tab order; open, its links are in it.
        assert page.locator("#chat-sidebar").evaluate("el => el.inert") is True
        page.get_by_role("button", name="Chats").click()
        assert page.locator("#chat-sidebar").evaluate("el => el.inert") is False
        expect(page.get_by_role("button", name="New chat")).to_be_focused()
    finally:
        context.close()
