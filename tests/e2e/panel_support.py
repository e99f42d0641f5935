"""Helpers of the panel's browser tests: sign-in, the admin API, edit boxes, screenshots, contrast."""

from __future__ import annotations

import re
import time

import httpx
from playwright.sync_api import Locator, Page, expect

from tests.e2e.conftest import ADMIN_PASSWORD, ADMIN_USER, ARTIFACTS
from tests.live import LiveServer

SCREENS = ARTIFACTS / "screens"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1440, "height": 900}

# For every element that holds text of its own: its text colour and the colour painted under it
# (the first opaque background up the tree, translucent ones blended in, opacity applied).
CONTRAST_SCRIPT = """() => {
  const parse = (text) => {
    const m = text.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const [r, g, b, a] = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number);
    return [r, g, b, a === undefined ? 1 : a];
  };
  const blend = (top, under) => top.slice(0, 3).map((c, i) => c * top[3] + under[i] * (1 - top[3])).concat(1);
  const background = (el) => {
    const layers = [];
    for (let node = el; node; node = node.parentElement) {
      const colour = parse(getComputedStyle(node).backgroundColor);
      if (colour && colour[3] > 0) {
        layers.push(colour);
        if (colour[3] >= 1) break;
      }
    }
    return layers.reverse().reduce((under, top) => blend(top, under), [255, 255, 255, 1]);
  };
  const opacity = (el) => {
    let value = 1;
    for (let node = el; node; node = node.parentElement) value *= Number(getComputedStyle(node).opacity);
    return value;
  };
  const luminance = (rgb) => {
    const [r, g, b] = rgb.slice(0, 3).map((c) => {
      const s = c / 255;
      return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const found = [];
  for (const el of document.querySelectorAll("body *")) {
    if (["SCRIPT", "STYLE", "OPTION", "CANVAS", "NOSCRIPT"].includes(el.tagName)) continue;
    if (el.closest('[aria-disabled="true"], .swagger-ui, [hidden]')) continue;
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.getClientRects().length) continue;
    const style = getComputedStyle(el);
    if (style.visibility === "hidden") continue;
    const under = background(el);
    const text = blend([...parse(style.color).slice(0, 3), parse(style.color)[3] * opacity(el)], under);
    const [hi, lo] = [luminance(text), luminance(under)].sort((a, b) => b - a);
    found.push({
      text: el.textContent.trim().slice(0, 40),
      tag: el.tagName + "." + el.className,
      ratio: Math.round(((hi + 0.05) / (lo + 0.05)) * 100) / 100,
    });
  }
  return found;
}"""


def sign_in(page: Page, username: str = ADMIN_USER, password: str = ADMIN_PASSWORD) -> None:
    """Sign in through the login form and land on the panel (or the account page)."""
    page.goto("/auth/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).not_to_have_url(re.compile(r"/auth/login"))


def admin_api(server: LiveServer) -> httpx.Client:
    """An httpx client (unopened: use it in ``with``) carrying the admin's Bearer access token."""
    login = httpx.post(
        server.url + "/auth/token", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD}, timeout=10
    )
    bearer = {"Authorization": f"Bearer {login.json()['access_token']}"}
    return httpx.Client(base_url=server.url, timeout=10, headers=bearer)


def wait_for_rows(api: httpx.Client, request_ids: set[str], timeout: float = 15) -> None:
    """Wait until the batched log writer has written these requests' rows."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = api.get("/api/admin/requests", params={"limit": 500}).json()["requests"]
        if request_ids <= {row["request_id"] for row in rows}:
            return
        time.sleep(0.2)
    raise AssertionError(f"rows {request_ids} never reached the request log")


def open_editor(row: Locator) -> Locator:
    """Open a row's Edit box and return its form (which the page shows in a full-width row below)."""
    row.locator("summary", has_text="Edit").click()
    return open_form(row.page)


def open_form(page: Page) -> Locator:
    """The one open row editor of the page, in the full-width row under its table row."""
    form = page.locator("tr.editor-row .editor-form")
    expect(form).to_be_visible()
    return form


def snap(page: Page, name: str) -> None:
    """Full-page screenshots at 1440 px and 390 px under ``test-artifacts/screens/`` (gitignored)."""
    SCREENS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    for label, viewport in (("1440", DESKTOP), ("390", PHONE)):
        page.set_viewport_size(viewport)
        page.screenshot(path=str(SCREENS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size(size)
