"""Personal API keys through the gateway (docs/contract.md §14): a custom app whose identity is its owner.

A gateway on the in-memory Ollama; keys are made by their owners through the real account API.
"""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from common.models import APIKey, User
from common.policies import Policy
from common.sources import Identity, RequestSource
from proxy_app.proxied import limit_subjects
from proxy_app.scheduler import LimitSubject
from tests.proxy.fake_ollama import chat_request
from tests.proxy.support import chat_body, cookie_header, log_rows

IP = "10.9.9.9"  # not whitelisted: a key or a login decides
SETTLE = 0.05  # seconds for a finished request's cleanup (which counts its tokens) to run
REFRESH = 0.7  # seconds: longer than the identity cache's refresh (0.5 s)


class People:
    """alice and bob, the admin app that makes their keys, and the gateway's client."""

    def __init__(self, settings, db, admin) -> None:
        self.settings, self.db, self.admin = settings, db, admin
        self.ids = {name: db.user(name) for name in ("alice", "bob")}
        self.client = None

    def make_key(self, owner: str, name: str = "agent") -> tuple[str, int]:
        """A personal key made by ``owner`` through ``POST /account/api/keys``."""
        token = self.admin.access_token(owner)
        response = self.admin.app.test_client().post(
            "/account/api/keys", json={"name": name}, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 201, response.get_data(as_text=True)
        return response.get_json()["key"], response.get_json()["id"]

    def set(self, table, row_id: int, **values) -> None:
        with self.db.sessions.begin() as session:
            session.execute(sa.update(table).where(table.id == row_id).values(**values))

    async def chat(self, headers: dict, model: str = "llama3.2"):
        response = await chat_request(self.client, IP, headers=headers, body=chat_body(model, stream=False))
        await asyncio.sleep(SETTLE)
        return response


@pytest.fixture
def people(settings_factory, accounts, admin_app, fake_ollama):
    fake_ollama.models = ("llama3.2:latest", "qwen2.5:7b")
    settings = settings_factory(WEBCHAT_RPM="3", USER_KEY_PRIORITY="7")
    return People(settings, accounts(settings), admin_app(settings))


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def test_a_personal_key_is_a_custom_app_logged_as_its_owner(people, make_gateway):
    secret, key_id = people.make_key("bob")
    people.client = await make_gateway(people.settings)
    response = await people.chat(bearer(secret))
    assert response.status_code == 200
    assert response.headers["X-Seadragon-Source"] == "custom_app"
    for _ in range(100):  # the request log is written in batches
        rows = log_rows(people.settings)
        if rows:
            break
        await asyncio.sleep(0.05)
    assert [(row.api_key_id, row.user_id) for row in rows] == [(key_id, people.ids["bob"])]
    with people.db.sessions() as session:
        assert session.get(APIKey, key_id).priority == 7  # USER_KEY_PRIORITY


async def test_the_owners_rpm_counts_the_chat_and_every_key_together(people, make_gateway):
    first, _ = people.make_key("bob", "one")
    second, _ = people.make_key("bob", "two")
    cookie = cookie_header(people.admin.session_cookie("bob"))
    people.client = await make_gateway(people.settings)
    assert (await people.chat(cookie)).status_code == 200
    assert (await people.chat(bearer(first))).status_code == 200
    assert (await people.chat(bearer(second))).status_code == 200
    refused = await people.chat(bearer(first))  # WEBCHAT_RPM=3 is bob's, whatever he calls with
    assert refused.status_code == 429 and "Retry-After" in refused.headers
    assert "for this account" in (await refused.get_json())["error"]
    alice, _ = people.make_key("alice")
    assert (await people.chat(bearer(alice))).status_code == 200  # alice's count is her own


async def test_the_owners_daily_tokens_count_every_key(people, make_gateway):
    secret, _ = people.make_key("bob")
    people.set(User, people.ids["bob"], daily_tokens=6)  # the in-memory Ollama spends 4 per chat
    people.client = await make_gateway(people.settings)
    assert (await people.chat(bearer(secret))).status_code == 200
    assert (await people.chat(cookie_header(people.admin.session_cookie("bob")))).status_code == 200
    refused = await people.chat(bearer(secret))
    assert refused.status_code == 429
    assert "daily token limit of 6 reached for this account" in (await refused.get_json())["error"]


async def test_a_policy_on_the_key_itself_applies_too_and_both_must_allow(people, make_gateway):
    secret, key_id = people.make_key("bob")
    people.set(APIKey, key_id, models=["qwen*"], rpm=1)
    people.set(User, people.ids["bob"], models=["llama*", "qwen*"])
    people.client = await make_gateway(people.settings)
    refused = await people.chat(bearer(secret), model="llama3.2")
    assert refused.status_code == 403
    assert (await refused.get_json())["error"] == "model 'llama3.2' is not allowed for this key"
    assert (await people.chat(bearer(secret), model="qwen2.5:7b")).status_code == 200
    limited = await people.chat(bearer(secret), model="qwen2.5:7b")  # the key's own rpm of 1
    assert limited.status_code == 429 and "for this key" in (await limited.get_json())["error"]
    cookie = cookie_header(people.admin.session_cookie("bob"))
    assert (await people.chat(cookie, model="llama3.2")).status_code == 200  # the chat is not the key
    people.set(User, people.ids["bob"], models=["mistral*"])
    await asyncio.sleep(REFRESH)
    refused = await people.chat(cookie, model="llama3.2")
    assert (await refused.get_json())["error"] == "model 'llama3.2' is not allowed for this account"


async def test_the_model_list_of_a_key_shows_only_what_both_policies_allow(people, make_gateway):
    secret, key_id = people.make_key("bob")
    people.set(APIKey, key_id, models=["qwen*", "llama*"])
    people.set(User, people.ids["bob"], models=["qwen*"])
    people.client = await make_gateway(people.settings)
    tags = await people.client.get("/api/tags", headers=bearer(secret), scope_base={"client": (IP, 1)})
    assert [model["name"] for model in (await tags.get_json())["models"]] == ["qwen2.5:7b"]


async def test_disabling_the_owner_stops_the_keys_within_a_second(people, make_gateway):
    secret, _ = people.make_key("bob")
    people.client = await make_gateway(people.settings)
    assert (await people.chat(bearer(secret))).status_code == 200
    people.set(User, people.ids["bob"], is_active=False)
    await asyncio.sleep(REFRESH)
    refused = await people.chat(bearer(secret))
    assert refused.status_code == 401
    people.set(User, people.ids["bob"], is_active=True)
    await asyncio.sleep(REFRESH)
    assert (await people.chat(bearer(secret))).status_code == 200


async def test_a_disabled_owners_key_made_since_the_last_refresh_is_refused_too(people, make_gateway):
    people.client = await make_gateway(people.settings)
    secret, _ = people.make_key("bob")
    people.set(User, people.ids["bob"], is_active=False)
    assert (await people.chat(bearer(secret))).status_code == 401


async def test_a_revoked_personal_key_is_refused(people, make_gateway):
    secret, key_id = people.make_key("bob")
    people.client = await make_gateway(people.settings)
    token = people.admin.access_token("bob")
    revoked = people.admin.app.test_client().delete(
        f"/account/api/keys/{key_id}", headers={"Authorization": f"Bearer {token}"}
    )
    assert revoked.status_code == 200
    await asyncio.sleep(REFRESH)
    assert (await people.chat(bearer(secret))).status_code == 401


async def wait_for_rows(settings, count: int) -> list:
    """The request log once it holds ``count`` rows (it is written in batches)."""
    for _ in range(100):
        rows = log_rows(settings)
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.05)
    raise AssertionError(f"the request log never held {count} rows: {len(log_rows(settings))}")


async def test_own_usage_is_unchanged_by_what_pages_load_and_counts_the_chat_and_keys(people, make_gateway):
    secret, _ = people.make_key("bob")
    cookie = cookie_header(people.admin.session_cookie("bob"))
    token = people.admin.access_token("bob")
    usage = people.admin.app.test_client()

    def own() -> dict:
        response = usage.get("/account/api/usage", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
        return response.get_json()

    people.client = await make_gateway(people.settings)
    before = own()
    # What /chat and /account load besides themselves: the model lists (logged, as every request is).
    for path in ("/api/tags", "/v1/models", "/api/version"):
        listed = await people.client.get(path, headers=cookie, scope_base={"client": (IP, 1)})
        assert listed.status_code == 200
    await wait_for_rows(people.settings, 3)
    assert own() == before
    assert before["day"] == {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "gpu_seconds": 0.0}
    assert (await people.chat(cookie)).status_code == 200
    assert (await people.chat(bearer(secret))).status_code == 200
    await wait_for_rows(people.settings, 5)
    after = own()
    assert after["day"] == after["week"]
    gpu = after["day"].pop("gpu_seconds")
    assert after["day"] == {"requests": 2, "prompt_tokens": 6, "completion_tokens": 2}
    assert 0 < gpu < 10  # both generations held a slot (docs/contract.md §13)
    assert after["limits"]["rpm"] == 3  # WEBCHAT_RPM, as bob's own is unset
    assert after["remaining"] == {"daily_tokens": None, "daily_gpu_seconds": None}  # no daily limit: null


def test_a_personal_key_s_queue_caps_bound_the_key_besides_its_owner():
    owner = Policy(max_queued=4, max_concurrent=2)
    key = Policy(max_concurrent=1)
    identity = Identity(RequestSource.CUSTOM_APP, 5, api_key_id=12, user_id=7, policy=owner, key_policy=key)
    assert identity.who == "user:7"  # fair share: the owner, with the chat and every other key
    assert limit_subjects(identity) == (LimitSubject("user:7", 4, 2), LimitSubject("key:12", None, 1))
    assert identity.limit_subjects == (("user:7", owner), ("key:12", key))
    chat = Identity(RequestSource.WEB_CHAT, 3, user_id=7, policy=owner)
    assert limit_subjects(chat) == (LimitSubject("user:7", 4, 2),)
