"""Policies per identity enforced by the gateway (docs/contract.md §7), through HTTP.

A gateway on the in-memory Ollama; policies are written to the database before it starts, or
changed through the real admin API while it runs.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa

from common.models import APIKey, User, WhitelistEntry, utcnow
from common.security import hash_secret
from tests.proxy.fake_ollama import call, chat_request
from tests.proxy.support import chat_body, cookie_header

KEY_IP = "10.9.9.9"  # not whitelisted: a key or a login decides
WHITELISTED_IP = "10.0.0.5"
MODELS = ("llama3.2:latest", "mistral:latest", "qwen2.5:7b")
TOKENS_PER_CHAT = 4  # the in-memory Ollama's prompt_eval_count 3 + eval_count 1
SPEND_SETTLE = 0.05  # seconds for a finished request's cleanup (which counts its tokens) to run


class World:
    """The gateway's client and the accounts behind it."""

    def __init__(self, settings, db, admin) -> None:
        self.settings, self.db, self.admin = settings, db, admin
        self.client = None

    def key(self, **policy) -> tuple[str, int]:
        """A key with ``policy``; returns its secret and id."""
        secret = self.db.key("app")
        with self.db.sessions.begin() as session:
            key_id = session.scalar(sa.select(APIKey.id).where(APIKey.key_hash == hash_secret(secret)))
            if policy:
                session.execute(sa.update(APIKey).where(APIKey.id == key_id).values(**policy))
        return secret, key_id

    def set(self, table, row_id: int, **policy) -> None:
        """Write policy columns straight to the database (as the admin app stores them)."""
        with self.db.sessions.begin() as session:
            session.execute(sa.update(table).where(table.id == row_id).values(**policy))

    async def chat(self, ip: str = KEY_IP, *, model: str = "llama3.2", headers: dict | None = None):
        """A non-streamed chat; waits for its cleanup so its tokens are counted."""
        response = await chat_request(self.client, ip, headers=headers, body=chat_body(model, stream=False))
        await asyncio.sleep(SPEND_SETTLE)
        return response


@pytest.fixture
def world(settings_factory, accounts, admin_app, fake_ollama):
    """Accounts on a fresh database (start the gateway with :func:`start`)."""
    fake_ollama.models = MODELS
    fake_ollama.overrides["/api/ps"] = lambda request: httpx.Response(
        200, json={"models": [{"name": name, "model": name, "size": 1} for name in MODELS[:2]]}
    )
    fake_ollama.overrides["/api/show"] = lambda request: httpx.Response(
        200, json={"template": "{{ .Prompt }}"}
    )
    settings = settings_factory(WEBCHAT_RPM="2", WEBCHAT_DAILY_TOKENS="6")
    db = accounts(settings)
    db.user("alice")
    db.user("root", admin=True)
    return World(settings, db, admin_app(settings))


async def start(world: World, make_gateway) -> World:
    world.client = await make_gateway(world.settings)
    return world


def key_header(secret: str) -> dict[str, str]:
    return {"X-API-Key": secret}


async def error_of(response) -> str:
    return (await response.get_json())["error"]


# --- models -------------------------------------------------------------------------------


@pytest.mark.costly  # a served gateway
async def test_a_key_generates_only_with_its_models_and_others_are_never_forwarded(
    world, make_gateway, fake_ollama
):
    secret, _ = world.key(models=["llama3.2", "qwen*"])
    await start(world, make_gateway)
    headers = key_header(secret)
    refused = await world.chat(model="mistral", headers=headers)
    assert refused.status_code == 403
    assert await error_of(refused) == "model 'mistral' is not allowed for this key"
    openai = await call(
        world.client,
        "POST",
        "/v1/chat/completions",
        KEY_IP,
        headers=headers,
        json={"model": "mistral:latest", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert openai.status_code == 403
    assert await error_of(openai) == "model 'mistral:latest' is not allowed for this key"
    assert "/api/chat" not in fake_ollama.paths() and "/v1/chat/completions" not in fake_ollama.paths()
    for model in ("llama3.2", "library/llama3.2:latest", "qwen2.5:7b"):
        assert (await world.chat(model=model, headers=headers)).status_code == 200
    assert fake_ollama.paths().count("/api/chat") == 3


async def test_a_whitelist_entry_and_a_user_are_refused_other_models_in_their_words(world, make_gateway):
    entry_id = world.db.whitelist(WHITELISTED_IP)
    world.set(WhitelistEntry, entry_id, models=["qwen*"])
    alice = world.db.sessions().scalar(sa.select(User.id).where(User.username == "alice"))
    world.set(User, alice, models=["qwen*"])
    await start(world, make_gateway)
    by_address = await world.chat(WHITELISTED_IP)
    assert by_address.status_code == 403
    assert await error_of(by_address) == "model 'llama3.2' is not allowed for this address"
    by_user = await world.chat(headers=cookie_header(world.admin.session_cookie("alice")))
    assert by_user.status_code == 403
    assert await error_of(by_user) == "model 'llama3.2' is not allowed for this account"


@pytest.mark.parametrize(
    ("path", "field", "name"),
    [("/api/tags", "models", "name"), ("/api/ps", "models", "name"), ("/v1/models", "data", "id")],
)
async def test_model_lists_show_only_the_allowed_models(world, make_gateway, path, field, name):
    secret, _ = world.key(models=["llama3.2", "qwen*"])
    plain, _ = world.key()
    await start(world, make_gateway)
    limited = await call(world.client, "GET", path, KEY_IP, headers=key_header(secret))
    assert limited.status_code == 200
    listed = [item[name] for item in (await limited.get_json())[field]]
    assert listed == [model for model in MODELS[: 2 if path == "/api/ps" else 3] if model != "mistral:latest"]
    upstream = await call(world.client, "GET", path, WHITELISTED_IP)  # nobody: refused, not listed
    assert upstream.status_code == 401
    unlimited = await call(world.client, "GET", path, KEY_IP, headers=key_header(plain))
    expected = {
        "/api/tags": {"models": [{"name": m, "model": m} for m in MODELS]},
        "/api/ps": {"models": [{"name": m, "model": m, "size": 1} for m in MODELS[:2]]},
        "/v1/models": {"object": "list", "data": [{"id": m} for m in MODELS]},
    }[path]
    # Without a policy the answer passes through byte for byte (httpx's own JSON encoding).
    assert await unlimited.get_data() == httpx.Response(200, json=expected).content


async def test_showing_another_model_is_404_and_never_forwarded(world, make_gateway, fake_ollama):
    secret, _ = world.key(models=["llama3.2"])
    fake_ollama.overrides["/v1/models/llama3.2"] = lambda request: httpx.Response(
        200, json={"id": "llama3.2"}
    )
    await start(world, make_gateway)
    headers = key_header(secret)
    show = await call(world.client, "POST", "/api/show", KEY_IP, headers=headers, json={"model": "mistral"})
    assert show.status_code == 404
    assert await show.get_json() == {"error": "model 'mistral' not found"}
    one = await call(world.client, "GET", "/v1/models/qwen2.5:7b", KEY_IP, headers=headers)
    assert one.status_code == 404
    assert await one.get_json() == {"error": "model 'qwen2.5:7b' not found"}
    assert "/api/show" not in fake_ollama.paths() and "/v1/models/qwen2.5:7b" not in fake_ollama.paths()
    allowed = await call(
        world.client, "POST", "/api/show", KEY_IP, headers=headers, json={"model": "llama3.2"}
    )
    assert allowed.status_code == 200
    assert (
        await call(world.client, "GET", "/v1/models/llama3.2", KEY_IP, headers=headers)
    ).status_code == 200


# --- rpm and daily_tokens -------------------------------------------------------------------


async def test_rpm_refuses_the_next_queued_request_with_retry_after(world, make_gateway):
    secret, _ = world.key(rpm=2)
    await start(world, make_gateway)
    headers = key_header(secret)
    assert [(await world.chat(headers=headers)).status_code for _ in range(2)] == [200, 200]
    refused = await world.chat(headers=headers)
    assert refused.status_code == 429
    assert await error_of(refused) == "rate limit of 2 requests per minute reached for this key"
    assert 55 <= int(refused.headers["Retry-After"]) <= 60
    # The fast lane is not counted.
    assert (await call(world.client, "GET", "/api/tags", KEY_IP, headers=headers)).status_code == 200


async def test_rpm_counts_per_key_whatever_end_user_it_names(world, make_gateway):
    # README "End users behind a shared key": fair share goes per end user, the key's policy stays the key's.
    secret, _ = world.key(rpm=2, end_user_header="X-OpenWebUI-User-Id")
    await start(world, make_gateway)
    people = [{**key_header(secret), "X-OpenWebUI-User-Id": person} for person in ("u-1", "u-2", "u-3")]
    assert [(await world.chat(headers=headers)).status_code for headers in people[:2]] == [200, 200]
    refused = await world.chat(headers=people[2])
    assert refused.status_code == 429
    assert await error_of(refused) == "rate limit of 2 requests per minute reached for this key"


async def test_daily_tokens_refuse_once_spent_with_retry_after_of_the_window(world, make_gateway):
    secret, _ = world.key(daily_tokens=TOKENS_PER_CHAT + 1)
    await start(world, make_gateway)
    headers = key_header(secret)
    assert (await world.chat(headers=headers)).status_code == 200  # 4 of 5
    assert (await world.chat(headers=headers)).status_code == 200  # under at admission; 8 after
    refused = await world.chat(headers=headers)
    assert refused.status_code == 429
    assert await error_of(refused) == "daily token limit of 5 reached for this key"
    assert 86_000 <= int(refused.headers["Retry-After"]) <= 86_400


@pytest.mark.costly  # a served gateway
async def test_a_user_takes_webchat_defaults_unless_their_own_policy_says_otherwise(world, make_gateway):
    bob = world.db.user("bob")
    world.set(User, bob, rpm=5)
    await start(world, make_gateway)
    alice = cookie_header(world.admin.session_cookie("alice"))
    assert [(await world.chat(headers=alice)).status_code for _ in range(3)] == [
        200,
        200,
        429,
    ]  # WEBCHAT_RPM=2
    bob_cookie = cookie_header(world.admin.session_cookie("bob"))
    statuses = [(await world.chat(headers=bob_cookie)).status_code for _ in range(3)]
    # Bob's own rpm (5) replaces WEBCHAT_RPM; WEBCHAT_DAILY_TOKENS=6 still applies: 8 tokens after two.
    assert statuses == [200, 200, 429]
    assert "daily token limit of 6" in await error_of(await world.chat(headers=bob_cookie))


# --- expiry ---------------------------------------------------------------------------------


async def test_an_expired_key_is_401_before_anything_else(world, make_gateway, fake_ollama):
    expired, _ = world.key(expires_at=utcnow() - timedelta(seconds=1), models=["nothing"])
    current, _ = world.key(expires_at=utcnow() + timedelta(hours=1))
    await start(world, make_gateway)
    for method, path in (("POST", "/api/chat"), ("GET", "/api/tags"), ("POST", "/api/pull")):
        response = await call(
            world.client, method, path, WHITELISTED_IP, headers=key_header(expired), json=chat_body()
        )
        assert response.status_code == 401
        assert await error_of(response) == "API key expired"
    assert fake_ollama.paths() == []
    assert (await world.chat(headers=key_header(current))).status_code == 200


# --- changes while running --------------------------------------------------------------------


def admin_patch(world: World, path: str, body: dict) -> dict:
    token = world.admin.access_token("root")
    response = world.admin.app.test_client().patch(
        path, json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()


async def seconds_until(predicate, timeout: float = 5.0) -> float:
    started = time.monotonic()
    while not await predicate():
        assert time.monotonic() - started < timeout, "the change never took effect"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


@pytest.mark.costly  # waits for the patch to bite
async def test_a_policy_patched_through_the_admin_api_bites_within_a_second(world, make_gateway):
    secret, key_id = world.key()
    await start(world, make_gateway)
    headers = key_header(secret)
    assert (await world.chat(headers=headers)).status_code == 200
    admin_patch(world, f"/api/admin/apikeys/{key_id}", {"models": ["qwen*"]})

    async def refused() -> bool:
        return (await world.chat(headers=headers)).status_code == 403

    assert await seconds_until(refused) < 1.0
    admin_patch(world, f"/api/admin/apikeys/{key_id}", {"models": None, "expires_at": "2001-01-01T00:00:00Z"})

    async def expired() -> bool:
        response = await world.chat(headers=headers)
        return response.status_code == 401 and await error_of(response) == "API key expired"

    assert await seconds_until(expired) < 1.0


@pytest.mark.costly  # waits out a window
async def test_limits_count_requests_from_the_moment_they_are_set(world, make_gateway):
    secret, key_id = world.key(rpm=10, daily_tokens=1000)
    await start(world, make_gateway)
    headers = key_header(secret)
    assert [(await world.chat(headers=headers)).status_code for _ in range(3)] == [200] * 3  # 12 tokens
    limit = 2 * TOKENS_PER_CHAT + 1
    admin_patch(world, f"/api/admin/apikeys/{key_id}", {"rpm": 3, "daily_tokens": limit})
    await asyncio.sleep(1.0)  # two refreshes of the identity cache
    # Neither the three earlier requests nor their 12 tokens count against the new limits.
    assert [(await world.chat(headers=headers)).status_code for _ in range(2)] == [200] * 2
    # 8 tokens of 9 and 2 requests of 3: one more is admitted, then the tokens are spent.
    assert (await world.chat(headers=headers)).status_code == 200
    refused = await world.chat(headers=headers)
    assert refused.status_code == 429
    assert "daily token limit" in await error_of(refused)
    admin_patch(world, f"/api/admin/apikeys/{key_id}", {"daily_tokens": None})
    await asyncio.sleep(1.0)
    assert (await world.chat(headers=headers)).status_code == 429  # now the rpm: 3 since it was set
    assert "rate limit of 3" in await error_of(await world.chat(headers=headers))


@pytest.mark.costly  # two gateways, one after the other
async def test_a_restarted_gateway_remembers_the_days_tokens_and_when_the_limit_was_set(world, make_gateway):
    secret, key_id = world.key()
    first = await start(world, make_gateway)
    headers = key_header(secret)
    assert [(await first.chat(headers=headers)).status_code for _ in range(3)] == [200] * 3  # 12 tokens
    limit = 2 * TOKENS_PER_CHAT + 1
    admin_patch(world, f"/api/admin/apikeys/{key_id}", {"daily_tokens": limit})
    await asyncio.sleep(1.0)
    assert [(await first.chat(headers=headers)).status_code for _ in range(2)] == [200] * 2  # 8 of 9
    await asyncio.sleep(1.0)  # the request log is written in batches
    second = World(world.settings, world.db, world.admin)
    second.client = await make_gateway(world.settings)  # another gateway, started on the same database
    # It reads when the limit was set from the audit log (the 12 earlier tokens do not count) and
    # the 8 tokens since from the request log: one more request is admitted, then none.
    assert (await second.chat(headers=headers)).status_code == 200
    refused = await second.chat(headers=headers)
    assert refused.status_code == 429, await refused.get_data()
