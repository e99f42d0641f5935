"""Settings: defaults from docs/contract.md §2 and one clear line per bad value."""

from __future__ import annotations

import pytest

from common.settings import Backend, ConfigError, Settings


def make(tmp_path, **values) -> Settings:
    env = {"SEADRAGON_INSTANCE_DIR": str(tmp_path)}
    env.update({f"SEADRAGON_{k}": v for k, v in values.items()})
    return Settings.from_env(env)


def test_it_uses_the_documented_defaults(tmp_path):
    settings = make(tmp_path)
    assert settings.database_url == f"sqlite:///{tmp_path / 'seadragon.db'}"
    assert settings.backends == (Backend("http://127.0.0.1:11434", 1),)
    assert (settings.max_queue, settings.queue_timeout, settings.aging_per_minute) == (512, 600.0, 0.1)
    assert (settings.direct_priority, settings.webchat_priority) == (1, 3)
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert (settings.connect_timeout, settings.first_byte_timeout, settings.idle_timeout) == (5, 300, 120)
    assert settings.max_body == 16 * 1024 * 1024
    assert settings.early_headers is True
    assert "http://localhost:3000" in settings.cors_origins
    assert settings.redis_url is None and settings.metrics_token is None


def test_it_generates_the_secret_key_once_and_keeps_it(tmp_path):
    first = make(tmp_path).secret_key
    assert len(first) >= 32
    assert make(tmp_path).secret_key == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_it_never_shows_secrets_in_its_repr(tmp_path):
    settings = make(tmp_path, SECRET_KEY="s3cr3t-value", METRICS_TOKEN="m3tr1cs", ADMIN_PASSWORD="pw-value")
    text = repr(settings)
    assert "s3cr3t-value" not in text and "m3tr1cs" not in text and "pw-value" not in text


def test_it_parses_backends_with_per_url_slots(tmp_path):
    settings = make(tmp_path, OLLAMA_URLS="http://gpu1:11434=4, http://gpu2:11434/", MAX_CONCURRENT="2")
    assert settings.backends == (Backend("http://gpu1:11434", 4), Backend("http://gpu2:11434", 2))
    assert settings.ollama_urls_set


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("MAX_QUEUE", "many", "whole number"),
        ("MAX_QUEUE", "-1", "between"),
        ("PORT", "70000", "between"),
        ("QUEUE_TIMEOUT", "soon", "number"),
        ("AGING_PER_MINUTE", "nan", "number"),
        ("DIRECT_PRIORITY", "101", "between"),
        ("EARLY_HEADERS", "perhaps", "true or false"),
        ("MAX_BODY", "16MB", "size"),
        ("OLLAMA_URLS", "ftp://gpu", "http(s)"),
        ("OLLAMA_URLS", "http://gpu=0", "slots"),
        ("OLLAMA_URLS", "http://a:1,http://a:1", "twice"),
        ("TRUSTED_PROXIES", "10.0.0.0/33", "CIDR"),
        ("CORS_ORIGINS", "https://x.example/path", "origin"),
        ("REDIS_URL", "http://redis", "redis://"),
        ("DATABASE_URL", "mysql://x", "unsupported"),
    ],
)
def test_a_bad_value_stops_with_one_line_naming_the_variable(tmp_path, name, value, fragment):
    with pytest.raises(ConfigError) as caught:
        make(tmp_path, **{name: value})
    message = str(caught.value)
    assert message.startswith(f"SEADRAGON_{name}:")
    assert fragment in message
    assert "\n" not in message


def test_it_reads_sizes_with_units(tmp_path):
    assert make(tmp_path, MAX_BODY="1KiB").max_body == 1024
    assert make(tmp_path, MAX_BODY="2MiB").max_body == 2 * 1024**2
    assert make(tmp_path, MAX_BODY="12345").max_body == 12345


def test_it_reads_a_secret_from_a_file(tmp_path):
    secret = tmp_path / "key.txt"
    secret.write_text("from-a-file\n")
    assert make(tmp_path, SECRET_KEY_FILE=str(secret)).secret_key == "from-a-file"


def test_it_maps_postgres_urls_to_the_psycopg_driver(tmp_path):
    settings = make(tmp_path, DATABASE_URL="postgresql://u:p@127.0.0.1/db")
    assert settings.database_url == "postgresql+psycopg://u:p@127.0.0.1/db"


def test_it_uses_the_documented_defaults_of_policies_and_scheduling(tmp_path):
    settings = make(tmp_path)
    assert settings.cloud_models == "off"
    assert (settings.fair_share, settings.model_affinity, settings.affinity_max_delay) == (0.5, 0.5, 60.0)
    assert settings.shutdown_grace == 30.0
    assert settings.webchat_rpm is None and settings.webchat_daily_tokens is None
    assert settings.public_url is None
    assert (settings.log_retention_days, settings.access_log) == (90, "text")


def test_it_reads_choices_limits_and_the_public_url(tmp_path):
    settings = make(
        tmp_path,
        CLOUD_MODELS="Admin",
        WEBCHAT_RPM="20",
        WEBCHAT_DAILY_TOKENS="100000",
        PUBLIC_URL="https://llm.example.org/gw/",
        ACCESS_LOG="json",
    )
    assert settings.cloud_models == "admin" and settings.access_log == "json"
    assert (settings.webchat_rpm, settings.webchat_daily_tokens) == (20, 100_000)
    assert settings.public_url == "https://llm.example.org/gw"


def test_personal_keys_and_password_resets_have_their_documented_defaults(tmp_path):
    settings = make(tmp_path)
    assert (settings.user_max_keys, settings.user_key_priority, settings.password_reset_hours) == (5, 5, 24)
    read = make(tmp_path, USER_MAX_KEYS="0", USER_KEY_PRIORITY="9", PASSWORD_RESET_HOURS="2")
    assert (read.user_max_keys, read.user_key_priority, read.password_reset_hours) == (0, 9, 2)


def test_the_end_user_length_defaults_to_128_and_reads_up_to_the_column_width(tmp_path):
    assert make(tmp_path).end_user_max_length == 128
    assert make(tmp_path, END_USER_MAX_LENGTH="200").end_user_max_length == 200


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("CLOUD_MODELS", "sometimes", "expected one of off, admin, on"),
        ("ACCESS_LOG", "xml", "expected one of text, json, off"),
        ("WEBCHAT_RPM", "0", "between 1 and"),
        ("FAIR_SHARE", "-1", "at least 0"),
        ("PUBLIC_URL", "llm.example.org", "not a base URL"),
        ("LOG_RETENTION_DAYS", "0", "between 1 and"),
        ("END_USER_MAX_LENGTH", "201", "between 1 and 200"),
        ("USER_MAX_KEYS", "-1", "between 0 and 1000"),
        ("USER_KEY_PRIORITY", "101", "between 0 and 100"),
        ("PASSWORD_RESET_HOURS", "0", "between 1 and 720"),
        ("DAILY_TOKENS_RESERVE", "-1", "between 0 and"),
        ("FAIR_SHARE_SECONDS", "-1", "at least 0"),
        ("FAIR_SHARE_WINDOW", "0", "at least 1"),
        ("WEBCHAT_DAILY_GPU_SECONDS", "0", "between 1 and"),
    ],
)
def test_a_bad_policy_or_scheduling_value_names_the_variable(tmp_path, name, value, fragment):
    with pytest.raises(ConfigError) as caught:
        make(tmp_path, **{name: value})
    assert f"SEADRAGON_{name}" in str(caught.value) and fragment in str(caught.value)


def test_it_uses_the_documented_door_limits_and_reads_them(tmp_path):
    settings = make(tmp_path)
    assert (settings.head_timeout, settings.keepalive_timeout) == (10.0, 120.0)
    assert settings.max_head_size == 64 * 1024
    assert (settings.max_connections, settings.max_pending_per_ip) == (8192, 64)
    assert settings.listen_backlog == 4096
    assert (settings.health_interval, settings.health_timeout, settings.health_failures) == (5.0, 3.0, 2)
    assert settings.upstream_keepalive_expiry == 4.0
    custom = make(
        tmp_path,
        HEAD_TIMEOUT="2.5",
        KEEPALIVE_TIMEOUT="30",
        MAX_HEAD_SIZE="8KiB",
        MAX_CONNECTIONS="100",
        MAX_PENDING_PER_IP="3",
        LISTEN_BACKLOG="100",
        HEALTH_INTERVAL="2",
        HEALTH_TIMEOUT="1.5",
        HEALTH_FAILURES="3",
        UPSTREAM_KEEPALIVE_EXPIRY="0",
    )
    assert (custom.head_timeout, custom.keepalive_timeout, custom.max_head_size) == (2.5, 30.0, 8192)
    assert (custom.max_connections, custom.max_pending_per_ip, custom.listen_backlog) == (100, 3, 100)
    assert (custom.health_interval, custom.health_timeout, custom.health_failures) == (2.0, 1.5, 3)
    assert custom.upstream_keepalive_expiry == 0.0


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("HEAD_TIMEOUT", "0", "at least"),
        ("KEEPALIVE_TIMEOUT", "soon", "expected a number"),
        ("MAX_HEAD_SIZE", "1MB", "expected bytes"),
        ("MAX_CONNECTIONS", "0", "between 1 and"),
        ("LISTEN_BACKLOG", "70000", "between 1 and"),
        ("HEALTH_FAILURES", "0", "between 1 and"),
        ("HEALTH_TIMEOUT", "0", "at least"),
        ("UPSTREAM_KEEPALIVE_EXPIRY", "-1", "at least"),
        ("MAX_PENDING_PER_IP", "many", "whole number"),
        ("TRUSTED_PROXIES", "10.0.0.0/٨", "not an IP address or CIDR"),
        ("TRUSTED_PROXIES", "fe80::1%eth0", "not an IP address or CIDR"),
    ],
)
def test_a_bad_door_limit_or_proxy_names_the_variable(tmp_path, name, value, fragment):
    with pytest.raises(ConfigError) as error:
        make(tmp_path, **{name: value})
    assert str(error.value).startswith(f"SEADRAGON_{name}:")
    assert fragment in str(error.value)
