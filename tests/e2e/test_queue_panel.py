"""The dashboard's live queue with its Cancel button (docs/contract.md §8), in a real browser.

One slot on the simulator: a slow stream holds it, a second request waits, the admin cancels the
waiting one from the dashboard; its client gets 503 ``cancelled by an administrator``.
"""

from __future__ import annotations

import threading

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ARTIFACTS

# The dashboard test's slow simulator and one-slot gateway, for this module too.
from tests.e2e.dashboard_world import live_server, make_key, signed_in, simulator  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser

HOLD = {"X-Sim-Delay": "0.2", "X-Sim-Tokens": "150"}  # a 30 s stream unless cancelled
BODY = {"model": "llama3.2", "messages": [{"role": "user", "content": "Hello"}]}


def in_background(fn) -> dict:
    """Run ``fn`` in a thread; the dict gets its ``result`` (and the thread as ``thread``)."""
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("result", fn()), daemon=True)
    thread.start()
    outcome["thread"] = thread
    return outcome


def test_an_admin_cancels_a_waiting_request_from_the_dashboard(new_page, live_server):  # noqa: F811
    key = make_key(live_server, "shared-app")
    headers = {"X-API-Key": key}

    def hold() -> list[str]:
        with httpx.Client(base_url=live_server.url, timeout=60) as client:
            body = {**BODY, "stream": True}
            with client.stream("POST", "/api/chat", json=body, headers={**headers, **HOLD}) as response:
                return [line for line in response.iter_lines() if line.strip()]

    def wait() -> httpx.Response:
        return httpx.post(
            live_server.url + "/api/chat", json={**BODY, "stream": False}, headers=headers, timeout=60
        )

    page = signed_in(new_page())
    holder = in_background(hold)
    table = page.locator("#live-queue")
    expect(table.locator('tr[data-state="active"]')).to_have_count(1)
    waiter = in_background(wait)
    waiting = table.locator('tr[data-state="waiting"]')
    expect(waiting).to_have_count(1)
    expect(waiting).to_contain_text("llama3.2")
    expect(waiting).to_contain_text("/api/chat")
    expect(waiting.locator("td").nth(1)).to_have_text("key 'shared-app'")  # the key's name, not its id
    expect(waiting.locator("td").nth(5)).to_have_text("1")  # position
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "queue-panel-1440.png"), full_page=False)
    narrow = page.context.new_page()
    narrow.set_viewport_size({"width": 390, "height": 844})
    narrow.goto("/admin/")
    expect(narrow.locator('#live-queue tr[data-state="waiting"]')).to_have_count(1)
    narrow.locator("#live-queue").screenshot(path=str(ARTIFACTS / "queue-panel-390.png"))
    narrow.close()
    page.set_viewport_size({"width": 1440, "height": 900})
    page.locator("#live-queue").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "queue-panel-1440.png"))

    waiting.get_by_role("button", name="Cancel").click()
    waiter["thread"].join(10)
    refused = waiter["result"]
    assert refused.status_code == 503 and refused.json() == {"error": "cancelled by an administrator"}
    expect(waiting).to_have_count(0)
    expect(table).to_contain_text("Request cancelled")

    # The active stream too: it ends with the in-band error, and the table empties.
    active = table.locator('tr[data-state="active"]')
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    active.get_by_role("button", name="Cancel").click()
    expect(active).to_have_count(1)  # asked first: dismissing keeps it running
    assert asked and "Cancel the running request" in asked[0]
    page.once("dialog", lambda dialog: dialog.accept())
    active.get_by_role("button", name="Cancel").click()
    holder["thread"].join(10)
    assert holder["result"][-1] == '{"error": "cancelled by an administrator"}'
    expect(table.locator("tbody")).to_have_text("Nothing waiting or running")
