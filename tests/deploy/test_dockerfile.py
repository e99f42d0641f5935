"""The Dockerfile's shape (docs/contract.md §15); scripts/container-check.sh builds and runs it in CI."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments left out."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def test_the_base_is_an_argument_defaulting_to_python_slim_bookworm():
    steps = instructions()
    assert steps[0] == ("ARG", "BASE_IMAGE=python:3.12-slim-bookworm")
    assert all(rest.split()[0] == "${BASE_IMAGE}" for word, rest in steps if word == "FROM")


def test_only_the_runtime_requirements_go_in_before_the_code():
    steps = instructions()
    text = " ".join(rest for _, rest in steps)
    assert "requirements.txt" in text and "requirements-dev.txt" not in text
    # A plain venv (any Debian python3 with python3-venv), not a path only python images have.
    assert any("python3 -m venv /opt/venv" in rest for word, rest in steps if word == "RUN")
    final = final_stage()
    venv_copy = next(i for i, (w, rest) in enumerate(final) if w == "COPY" and "/opt/venv" in rest)
    code_copies = [i for i, (w, rest) in enumerate(final) if w == "COPY" and "proxy_app" in rest]
    assert code_copies and venv_copy < min(code_copies)


def test_it_runs_unprivileged_on_8080_with_its_state_on_the_volume():
    final = dict(final_stage()[1:])  # the last of each instruction in the image's own stage
    steps = final_stage()
    user = [rest for word, rest in steps if word == "USER"][-1]
    assert user.split(":")[0] not in ("root", "0")
    assert json.loads(final["VOLUME"]) == ["/data"]
    assert final["EXPOSE"] == "8080"
    env = " ".join(rest for word, rest in steps if word == "ENV")
    assert "SEADRAGON_HOST=0.0.0.0" in env and "SEADRAGON_INSTANCE_DIR=/data" in env
    assert "SEADRAGON_PORT=8080" in env


def test_the_healthcheck_asks_ready_and_the_entry_point_is_exec_form():
    steps = dict(final_stage())
    assert "/ready" in steps["HEALTHCHECK"] and "CMD [" in steps["HEALTHCHECK"]  # exec form: no shell
    entrypoint = json.loads(steps["ENTRYPOINT"])
    assert entrypoint == ["/usr/local/bin/seadragon-entrypoint"]
    script = (ROOT / "deploy" / "entrypoint.sh").read_text()
    # Every branch execs, so the gateway (or the simulator) receives SIGTERM itself.
    assert script.count("exec ") == 3 and "simulator)" in script


def test_the_context_leaves_out_the_venv_the_instance_the_tests_output_and_git():
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        return any(fnmatch.fnmatch(path, p) or path.split("/")[0] == p for p in patterns)

    for path in (".git", ".venv", "instance", "test-artifacts", ".pytest_cache", ".hypothesis"):
        assert ignored(path), path
    for path in ("requirements.txt", "asgi.py", "proxy_app", "deploy"):
        assert not ignored(path), path
