"""Model profiles' fields and body rewriting (docs/contract.md §12), without a server."""

from __future__ import annotations

import json

import pytest

from common.model_profiles import ModelProfile, ProfileError, adjust_body, validate_profile
from common.settings import ConfigError, Settings
from tests.conftest import settings_env


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"load_options": "everyone"}, "load_options"),
        ({"load_options": {"temperature": 1}}, "load_options"),
        ({"load_options": {"num_ctx": "big"}}, "load_options"),
        ({"load_options": {"use_mmap": 1}}, "load_options"),
        ({"keep_alive": "300"}, "keep_alive"),  # Go's ParseDuration wants a unit
        ({"keep_alive_min": "soon"}, "keep_alive_min"),
        ({"keep_alive_max": True}, "keep_alive_max"),
        ({"keep_alive_min": "2h", "keep_alive_max": "1h"}, "keep_alive_min"),
        ({"max_parallel": 0}, "max_parallel"),
        ({"max_parallel": 1.5}, "max_parallel"),
        ({"priority": 1}, "priority"),
    ],
)
def test_a_bad_field_is_refused_by_name(body: dict, field: str) -> None:
    with pytest.raises(ProfileError) as error:
        validate_profile(body)
    assert error.value.field == field and field in str(error.value)


def test_a_good_profile_keeps_the_admins_forms() -> None:
    profile = validate_profile(
        {
            "load_options": {"num_ctx": 8192, "use_mmap": False},
            "keep_alive": 1800.0,
            "keep_alive_max": "1h30m",
        }
    )
    assert profile.as_json() == {
        "load_options": {"num_ctx": 8192, "use_mmap": False},
        "keep_alive": 1800,
        "keep_alive_min": None,
        "keep_alive_max": "1h30m",
        "max_parallel": None,
    }
    assert validate_profile({}).load_options == "client"


def test_nothing_to_change_gives_none() -> None:
    body = {"model": "m", "options": {"num_ctx": 1}, "keep_alive": "5m"}
    assert adjust_body(json.dumps(body).encode(), body, ModelProfile()) is None
    pinned = ModelProfile(load_options={"num_ctx": 1}, keep_alive_min="1m", keep_alive_max="1h")
    assert adjust_body(json.dumps(body).encode(), body, pinned) is None


def test_every_spelling_go_reads_is_merged_and_rewritten_once() -> None:
    raw = b'{"model":"m","options":{"num_ctx":1,"seed":2},"OPTIONS":{"num_batch":8},"Keep_Alive":-1}'
    body = json.loads(raw)
    new, changes = adjust_body(raw, body, ModelProfile(load_options="server", keep_alive_max=60))
    assert json.loads(new) == {"model": "m", "options": {"seed": 2}, "keep_alive": 60}
    assert changes == ["num_ctx=default (asked 1)", "num_batch=default (asked 8)", "keep_alive=1m (asked -1)"]


def test_a_header_value_never_carries_what_a_client_smuggles() -> None:
    body = {"model": "m", "options": {"num_ctx": "1\r\nX-Evil: 1\u2028"}}
    _, changes = adjust_body(json.dumps(body).encode(), body, ModelProfile(load_options="server"))
    assert all(change.isascii() and change.isprintable() for change in changes)


def test_keep_alive_settings_are_read_strictly(tmp_path) -> None:
    settings = Settings.from_env(settings_env(tmp_path, KEEP_ALIVE_MIN="300", KEEP_ALIVE_MAX="1h30m"))
    assert (settings.keep_alive_min, settings.keep_alive_max) == (300, "1h30m")
    with pytest.raises(ConfigError, match="SEADRAGON_KEEP_ALIVE_MAX"):
        Settings.from_env(settings_env(tmp_path, KEEP_ALIVE_MAX="forever"))
    with pytest.raises(ConfigError, match="SEADRAGON_LOAD_OPTIONS"):
        Settings.from_env(settings_env(tmp_path, LOAD_OPTIONS="pinned"))
    with pytest.raises(ConfigError, match="SEADRAGON_STICKY_MAX_DELAY"):
        Settings.from_env(settings_env(tmp_path, STICKY_MAX_DELAY="-1"))
