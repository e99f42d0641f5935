"""common/policies.py: policy fields, their checks and model matching (docs/contract.md §7)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from common.models import APIKey, User
from common.policies import (
    POLICY_FIELDS,
    Policy,
    PolicyError,
    allowed_models,
    effective_user_policy,
    model_allowed,
    normalise_model_name,
    validate_header_name,
    validate_policy_patch,
)
from common.settings import Settings


@pytest.mark.parametrize(
    ("name", "normalised"),
    [
        ("llama3.2", "llama3.2:latest"),
        ("llama3.2:latest", "llama3.2:latest"),
        ("Llama3.2:LATEST", "llama3.2:latest"),
        ("library/llama3.2", "llama3.2:latest"),
        ("registry.ollama.ai/library/llama3.2:3b", "llama3.2:3b"),
        ("hf.co/bartowski/Qwen2.5-7B-GGUF:Q4_K_M", "hf.co/bartowski/qwen2.5-7b-gguf:q4_k_m"),
        ("localhost:5000/me/model", "localhost:5000/me/model:latest"),
    ],
)
def test_names_are_normalised_as_ollama_resolves_them(name, normalised):
    assert normalise_model_name(name) == normalised


@pytest.mark.parametrize(
    ("patterns", "name", "allowed"),
    [
        ((), "anything:7b", True),
        (("llama3.2",), "llama3.2:latest", True),
        (("llama3.2:latest",), "llama3.2", True),
        (("llama3.2",), "llama3.2:1b", False),  # a bare name is :latest, not every tag
        (("llama3.2:*",), "llama3.2:1b", True),
        (("qwen*",), "qwen2.5-coder:32b", True),
        (("qwen*",), "llama3.2", False),
        (("*:7b",), "mistral:7b", True),
        (("*:7b",), "mistral:70b", False),
        (("*-cloud",), "gpt-oss:120b-cloud", True),
        (("gpt-oss:120b",), "gpt-oss:120b-cloud", False),
        (("llama3.2", "qwen*"), "QWEN3:8B", True),
        (("llama3.?",), "llama3.2", False),  # only * is a wildcard
    ],
)
def test_model_patterns(patterns, name, allowed):
    assert model_allowed(Policy(models=patterns), name) is allowed


def test_allowed_models_keeps_the_order_of_the_list():
    policy = Policy(models=("qwen*", "llama3.2"))
    assert allowed_models(policy, ["llama3.2:latest", "mistral", "qwen3:8b"]) == [
        "llama3.2:latest",
        "qwen3:8b",
    ]


def test_a_patch_is_checked_field_by_field_and_null_clears():
    clean = validate_policy_patch(
        {
            "models": [" qwen* ", "llama3.2", "qwen*"],
            "rpm": 60,
            "max_queued": None,
            "expires_at": "2030-01-02T03:04:05Z",
        }
    )
    assert clean == {
        "models": ["qwen*", "llama3.2"],
        "rpm": 60,
        "max_queued": None,
        "expires_at": datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
    }
    assert validate_policy_patch({"models": []}) == {"models": None}  # no patterns: every model
    assert validate_policy_patch({"expires_at": "2030-01-02T05:04:05+02:00"})["expires_at"].hour == 3
    assert validate_policy_patch({"expires_at": "2030-01-02T03:04:05"})["expires_at"].tzinfo is UTC


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"rpm": 0}, "rpm"),
        ({"rpm": "60"}, "rpm"),
        ({"rpm": 1.5}, "rpm"),
        ({"rpm": True}, "rpm"),
        ({"max_queued": 100_001}, "max_queued"),
        ({"max_concurrent": -1}, "max_concurrent"),
        ({"daily_tokens": 10**12 + 1}, "daily_tokens"),
        ({"models": "llama3.2"}, "models"),
        ({"models": [""]}, "models"),
        ({"models": [3]}, "models"),
        ({"models": ["llama 3"]}, "models"),
        ({"models": ["x"] * 101}, "models"),
        ({"expires_at": "next tuesday"}, "expires_at"),
        ({"expires_at": 1893456000}, "expires_at"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_a_bad_value_or_unknown_field_is_named(patch, field):
    with pytest.raises(PolicyError) as caught:
        validate_policy_patch(patch)
    assert caught.value.field == field and field in caught.value.message


def test_fields_can_be_narrowed_for_users_and_whitelist_entries():
    with pytest.raises(PolicyError) as caught:
        validate_policy_patch({"expires_at": "2030-01-01T00:00:00Z"}, fields=POLICY_FIELDS[:-1])
    assert caught.value.field == "expires_at"


@pytest.mark.parametrize("name", ["X-OpenWebUI-User-Id", "x-user", "X_End_User"])
def test_an_end_user_header_is_a_header_name(name):
    assert validate_header_name(f" {name} ") == name
    assert validate_header_name(None) is None


@pytest.mark.parametrize(
    "name", ["", "X User", "X-User:", "Authorization", "x-api-key", "Cookie", "é", "x" * 101, 7]
)
def test_an_end_user_header_refuses_what_is_not_one(name):
    with pytest.raises(PolicyError) as caught:
        validate_header_name(name)
    assert caught.value.field == "end_user_header"


def test_a_policy_reads_a_row_and_knows_when_it_expired():
    now = datetime(2030, 1, 1, tzinfo=UTC)
    key = APIKey(models=["qwen*"], rpm=5, daily_tokens=1000, expires_at=now)
    policy = Policy.of(key)
    assert policy == Policy(models=("qwen*",), rpm=5, daily_tokens=1000, expires_at=now)
    assert policy.expired(now) and not policy.expired(now - timedelta(seconds=1))
    assert not Policy.of(User()).expired(now)


def test_a_users_unset_limits_take_the_web_chat_defaults():
    settings = Settings.from_env({"SEADRAGON_WEBCHAT_RPM": "10", "SEADRAGON_WEBCHAT_DAILY_TOKENS": "5000"})
    assert effective_user_policy(Policy(), settings) == Policy(rpm=10, daily_tokens=5000)
    own = Policy(rpm=3, max_concurrent=1)
    assert effective_user_policy(own, settings) == Policy(rpm=3, max_concurrent=1, daily_tokens=5000)
    assert effective_user_policy(own, Settings.from_env({})) == own


def test_a_policys_patterns_are_compiled_once_not_per_request():
    from common.policies import pattern_regex

    policy = Policy(models=("team-once/*:q4", "llama3.*"))
    assert model_allowed(policy, "team-once/coder:q4")  # compiles what it needs
    before = pattern_regex.cache_info()
    for _ in range(100):
        assert model_allowed(policy, "registry.ollama.ai/library/llama3.2")
        assert not model_allowed(policy, "qwen3:8b")
    after = pattern_regex.cache_info()
    assert after.misses - before.misses <= 1  # "llama3.*" at most once; every later match reuses it
    assert after.hits - before.hits >= 299
    assert pattern_regex("llama3.*") is pattern_regex("llama3.*")
