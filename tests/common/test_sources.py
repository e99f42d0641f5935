"""Classification (docs/contract.md §4): the rules in order, and no fall-through for bad keys."""

from __future__ import annotations

import pytest

from common.network import Whitelist, WhitelistRule, normalise_network, parse_ip
from common.security import hash_secret, new_api_key, new_secret
from common.sources import (
    ClassificationError,
    Credentials,
    KeyInfo,
    RequestSource,
    UserInfo,
    classify,
    parse_credentials,
    subjects_of,
)

KEY = new_api_key()
PERSONAL_KEY = new_api_key()
TOKEN = new_secret("sda_")
ALICE = UserInfo(7, "alice", False)
WHITELIST = Whitelist([WhitelistRule(3, normalise_network("10.0.0.0/24"), 0)])
ORIGINS = ("http://localhost:3000",)


def run(credentials: Credentials, ip: str = "203.0.113.5", origin: str | None = None, session_user=None):
    keys = {
        hash_secret(KEY): KeyInfo(11, 2, "ci-bot"),
        hash_secret(PERSONAL_KEY): KeyInfo(12, 5, "mine", None, 7),
    }
    tokens = {hash_secret(TOKEN): ALICE}
    return classify(
        credentials,
        parse_ip(ip),
        origin,
        find_key=keys.get,
        whitelist=WHITELIST,
        find_token_user=tokens.get,
        session_user=session_user,
        allowed_origins=ORIGINS,
        direct_priority=1,
        webchat_priority=3,
    )


def test_a_key_in_either_header_means_the_same():
    assert (
        parse_credentials(KEY, None) == parse_credentials(None, f"Bearer {KEY}") == Credentials(api_key=KEY)
    )
    assert parse_credentials(KEY, f"Bearer {KEY}") == Credentials(api_key=KEY)


def test_two_different_keys_are_refused_with_400():
    with pytest.raises(ClassificationError) as caught:
        parse_credentials(KEY, f"Bearer {new_api_key()}")
    assert caught.value.status == 400


def test_a_bearer_that_is_not_a_key_is_a_user_token():
    assert parse_credentials(None, f"Bearer {TOKEN}") == Credentials(user_token=TOKEN)
    assert parse_credentials(None, "Basic abc") == Credentials()


def test_a_key_makes_a_custom_app_with_the_keys_priority():
    identity = run(Credentials(api_key=KEY))
    assert (identity.source, identity.priority, identity.api_key_id) == (RequestSource.CUSTOM_APP, 2, 11)


def test_a_personal_key_is_a_custom_app_whose_identity_is_its_owner():
    identity = run(Credentials(api_key=PERSONAL_KEY))
    assert (identity.source, identity.priority) == (RequestSource.CUSTOM_APP, 5)
    assert (identity.api_key_id, identity.user_id) == (12, 7)
    # Limits and fair share: the owner (shared with the chat); the key's own policy as a second subject.
    assert (identity.holder, identity.who, identity.key_holder) == ("user:7", "user:7", "key:12")
    assert subjects_of(12, None, 7) == ["user:7", "key:12"] and subjects_of(11) == ["key:11"]
    admins = run(Credentials(api_key=KEY))
    assert (admins.holder, admins.key_holder, admins.user_id) == ("key:11", None, None)


# Fixed ids: a random key in a test id differs between pytest-xdist workers, which must collect alike.
@pytest.mark.parametrize(
    "bad",
    [new_api_key(), "sdk_short", "not-a-key", KEY + "x"],
    ids=["unknown", "short", "not-a-key", "one-too-long"],
)
def test_an_unknown_or_malformed_key_is_401_even_from_a_whitelisted_ip(bad):
    with pytest.raises(ClassificationError) as caught:
        run(Credentials(api_key=bad), ip="10.0.0.9", session_user=ALICE)
    assert caught.value.status == 401


def test_a_whitelisted_ip_is_direct_api_with_the_entrys_priority():
    identity = run(Credentials(), ip="10.0.0.9")
    assert (identity.source, identity.priority, identity.whitelist_entry_id) == (
        RequestSource.DIRECT_API,
        0,
        3,
    )


def test_a_keyless_request_from_a_foreign_origin_is_refused():
    with pytest.raises(ClassificationError) as caught:
        run(Credentials(), ip="10.0.0.9", origin="https://evil.example")
    assert caught.value.status == 403
    assert (
        run(Credentials(), ip="10.0.0.9", origin="http://localhost:3000").source == RequestSource.DIRECT_API
    )


def test_a_logged_in_user_is_web_chat():
    assert run(Credentials(), session_user=ALICE).source == RequestSource.WEB_CHAT
    identity = run(Credentials(user_token=TOKEN))
    assert (identity.source, identity.priority, identity.user_id) == (RequestSource.WEB_CHAT, 3, 7)


def test_an_unknown_access_token_is_401_and_does_not_fall_back_to_the_cookie():
    with pytest.raises(ClassificationError) as caught:
        run(Credentials(user_token="sda_unknown"), session_user=ALICE)
    assert caught.value.status == 401


def test_nobody_is_401():
    with pytest.raises(ClassificationError) as caught:
        run(Credentials())
    assert caught.value.status == 401
