"""The compose files (docs/contract.md §15) are valid Compose and wire the gateway as the README says."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from common.serving import BACKSTOP
from common.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCHEMA = json.loads((DEPLOY / "schema" / "compose-spec.json").read_text())
FILES = ["compose.yaml", "compose.scale.yaml"]
# What an operator exports before `up` (compose.scale.yaml requires these with ${NAME:?message}).
OPERATOR_ENV = {
    "POSTGRES_PASSWORD": "pg-secret",
    "SEADRAGON_SECRET_KEY": "k" * 48,
    "SEADRAGON_OLLAMA_URLS": "http://gpu-a:11434=2,http://gpu-b:11434",
}


def load(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text())


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?message}, as `docker compose config` resolves them."""

    def one(match: re.Match) -> str:
        name, op, rest = match.group(1), match.group(2), match.group(3) or ""
        if env.get(name):
            return env[name]
        if op == ":?":
            raise KeyError(f"{name} is required: {rest}")
        return rest if op == ":-" else ""

    return re.sub(r"\$\{(\w+)(:-|:\?)?([^}]*)\}", one, value)


def gateway_settings(environment: dict[str, str], env: dict[str, str]) -> Settings:
    values = {key: interpolate(str(value), env) for key, value in environment.items()}
    return Settings.from_env({"SEADRAGON_INSTANCE_DIR": "/data", **values})


@pytest.mark.parametrize("name", FILES)
def test_it_validates_against_the_compose_specification(name):
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    errors = sorted(jsonschema.Draft7Validator(SCHEMA).iter_errors(load(name)), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_schema_refuses_what_compose_refuses():
    broken = load("compose.yaml")
    broken["services"]["gateway"]["stop_grace_period"] = {"seconds": 45}
    broken["services"]["ollama"]["deploy"]["resources"]["reservations"]["devices"][0]["gpu"] = True
    broken["services"]["gateway"]["restart_policy"] = "always"
    errors = list(jsonschema.Draft7Validator(SCHEMA).iter_errors(broken))
    assert len(errors) == 3


@pytest.mark.parametrize("name", FILES)
def test_the_gateway_is_built_from_the_dockerfile_and_given_time_to_drain(name):
    gateway = load(name)["services"]["gateway"]
    assert (DEPLOY / gateway["build"]["context"] / gateway["build"]["dockerfile"]).resolve() == (
        ROOT / "Dockerfile"
    )
    grace = float(gateway["environment"]["SEADRAGON_SHUTDOWN_GRACE"])
    stop = float(gateway["stop_grace_period"].rstrip("s"))
    # Docker sends SIGKILL after stop_grace_period: the drain (grace + uvicorn's backstop) must fit.
    assert stop > grace + BACKSTOP
    assert gateway["read_only"] is True and gateway["cap_drop"] == ["ALL"]


def test_one_box_runs_ollama_with_a_gpu_or_the_simulator_in_its_place():
    compose = load("compose.yaml")
    services = compose["services"]
    ollama, simulator, gateway = services["ollama"], services["simulator"], services["gateway"]
    assert ollama["image"].startswith("ollama/ollama")
    assert ollama["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}
    ]
    assert ollama["profiles"] == ["ollama"] and simulator["profiles"] == ["demo"]
    # The demo's simulator comes from the gateway's image and answers under Ollama's name.
    assert simulator["image"] == gateway["image"] and simulator["build"] == gateway["build"]
    assert simulator["command"][0] == "simulator"
    assert simulator["networks"]["default"]["aliases"] == ["ollama"]
    port = simulator["command"][simulator["command"].index("--port") + 1]
    settings = gateway_settings(gateway["environment"], {})
    assert [b.url for b in settings.backends] == [f"http://ollama:{port}"]
    assert settings.admin_password is None  # unset: generated and printed once
    assert "seadragon-data:/data" in gateway["volumes"] and "seadragon-data" in compose["volumes"]
    assert gateway["ports"] == ["${SEADRAGON_PUBLISH:-8080}:8080"]


def test_at_scale_replicas_share_redis_and_postgresql_behind_nginx():
    compose = load("compose.scale.yaml")
    services = compose["services"]
    gateway, nginx = services["gateway"], services["nginx"]
    # --scale gateway=N needs a service with no fixed name and no host port.
    assert "container_name" not in gateway and "ports" not in gateway
    with pytest.raises(KeyError, match="SEADRAGON_SECRET_KEY"):
        gateway_settings(gateway["environment"], {k: v for k, v in OPERATOR_ENV.items() if "SECRET" not in k})
    settings = gateway_settings(gateway["environment"], OPERATOR_ENV)
    assert settings.database_url.startswith("postgresql+psycopg://seadragon:pg-secret@postgres:5432/")
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.secret_key == "k" * 48
    backends = [(b.url, b.slots) for b in settings.backends]
    assert backends == [("http://gpu-a:11434", 2), ("http://gpu-b:11434", 1)]
    # X-Forwarded-For is believed from nginx only, at its fixed address on the project's network.
    address = nginx["networks"]["default"]["ipv4_address"]
    assert [str(n) for n in settings.trusted_proxies] == [f"{address}/32"]
    subnet = compose["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert address.rsplit(".", 1)[0] == subnet.rsplit(".", 1)[0]
    # Migrations and the first admin run once, before any replica starts.
    assert services["migrate"]["command"] == ["python3", "-m", "common.bootstrap"]
    assert gateway["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_nginx_streams_unbuffered_and_names_the_client_itself():
    nginx = load("compose.scale.yaml")["services"]["nginx"]
    source, target = nginx["volumes"][0].split(":")[:2]
    assert target == "/etc/nginx/conf.d/default.conf"
    conf = (DEPLOY / source).read_text()
    directives = {
        line.split()[0]: " ".join(line.rstrip(";").split()[1:])
        for line in (raw.strip() for raw in conf.splitlines())
        if line and not line.startswith("#")
    }
    assert directives["proxy_buffering"] == "off"
    assert directives["proxy_request_buffering"] == "off"
    assert directives["proxy_http_version"] == "1.1"
    # Longer than a queue wait plus a cold model load (QUEUE_TIMEOUT 600 s + FIRST_BYTE_TIMEOUT 300 s).
    defaults = Settings.from_env({})
    longest_wait = defaults.queue_timeout + defaults.first_byte_timeout
    assert int(directives["proxy_read_timeout"].rstrip("s")) > longest_wait
    assert "X-Forwarded-For $remote_addr" in conf  # replaced, not appended to: a client cannot forge it
    assert directives["listen"] == "8080"
