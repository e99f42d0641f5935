"""deploy/seadragon-gateway.service (docs/contract.md §15): systemd accepts it, and it is locked down.

``systemd-analyze verify`` checks the unit against a temporary root holding the install layout it
names (the interpreter at /opt/seadragon-gateway/.venv/bin/python, systemd's own units), so nothing
is installed on the machine. ``systemd-analyze security --offline=true`` rates its exposure; the
contract asks for 2.0 or lower. Skipped only where systemd-analyze is missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.lifecycle.support import admin_headers, api_key, gateway_env
from tests.live import LiveServer

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "seadragon-gateway.service"
ANALYZE = shutil.which("systemd-analyze")
SYSTEM_UNITS = Path("/usr/lib/systemd/system")
needs_systemd = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def install_root(tmp_path: Path, unit_text: str, *, with_interpreter: bool = True) -> Path:
    """A root with the unit in /etc/systemd/system, systemd's units, and the interpreter it runs."""
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system" / UNIT.name).write_text(unit_text)
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    if with_interpreter:
        interpreter = root / "opt/seadragon-gateway/.venv/bin/python"
        interpreter.parent.mkdir(parents=True)
        shutil.copy(Path(sys.executable).resolve(), interpreter)
    return root


def verify(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [ANALYZE, "verify", f"--root={root}", f"/etc/systemd/system/{UNIT.name}"],
        capture_output=True,
        text=True,
        timeout=60,
    )


@needs_systemd
def test_systemd_analyze_verify_accepts_it(tmp_path):
    done = verify(install_root(tmp_path, UNIT.read_text()))
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "" and done.stdout.strip() == ""  # not even a warning


@needs_systemd
def test_verify_would_catch_a_missing_interpreter_or_a_misspelt_option(tmp_path):
    missing = verify(install_root(tmp_path / "a", UNIT.read_text(), with_interpreter=False))
    assert missing.returncode != 0 and "not executable" in missing.stderr
    misspelt = UNIT.read_text().replace("ProtectSystem=", "ProtectSytem=")
    assert "Unknown key 'ProtectSytem'" in verify(install_root(tmp_path / "b", misspelt)).stderr


@needs_systemd
def test_systemd_analyze_security_rates_it_2_or_lower():
    done = subprocess.run(
        [ANALYZE, "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout + done.stderr)
    assert match, done.stdout + done.stderr
    assert float(match.group(1)) <= 2.0, done.stdout


def test_it_runs_as_its_own_user_with_its_state_and_settings_where_the_readme_says():
    unit = directives(UNIT.read_text())
    assert unit["DynamicUser"] == ["yes"]
    assert unit["StateDirectory"] == ["seadragon-gateway"]
    assert "SEADRAGON_INSTANCE_DIR=%S/seadragon-gateway" in unit["Environment"][0].split()
    assert unit["EnvironmentFile"] == ["-/etc/seadragon-gateway/environment"]
    assert unit["ExecStart"] == ["/opt/seadragon-gateway/.venv/bin/python /opt/seadragon-gateway/asgi.py"]
    # systemd's SIGKILL must come after the drain: SHUTDOWN_GRACE (30 s) and uvicorn's 5 s backstop.
    assert int(unit["TimeoutStopSec"][0]) > 35 and unit["KillSignal"] == ["SIGTERM"]
    assert unit["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert unit["CapabilityBoundingSet"] == [""]
    assert unit["SystemCallFilter"][0] == "@system-service"


MDWE_WRAPPER = """
import ctypes, mmap, runpy, sys
libc = ctypes.CDLL(None, use_errno=True)
# PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN: what MemoryDenyWriteExecute=yes enforces, inherited by children.
if libc.prctl(65, 1, 0, 0, 0) != 0:
    sys.exit(f"PR_SET_MDWE failed: errno {ctypes.get_errno()}")
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit("PR_SET_MDWE failed: a writable executable mapping was allowed")
except PermissionError:
    pass  # refused, as systemd refuses it
sys.path.insert(0, ".")
sys.argv = ["asgi.py"]
runpy.run_path("asgi.py", run_name="__main__")
"""


@pytest.mark.slow  # a real gateway process
def test_the_gateway_runs_without_writable_executable_memory(tmp_path):
    """The unit's MemoryDenyWriteExecute=yes holds: login (argon2), chat, zstd bodies all work under it."""
    libc_prctl = subprocess.run(
        [sys.executable, "-c", "import ctypes; print(ctypes.CDLL(None).prctl(66, 0, 0, 0, 0))"],
        capture_output=True,
        text=True,
    )
    if libc_prctl.stdout.strip() == "-1":
        pytest.skip("this kernel has no PR_SET_MDWE (Linux < 6.3)")
    server = LiveServer(gateway_env(tmp_path, access_log="off"))
    server.argv = [sys.executable, "-c", MDWE_WRAPPER]
    server.start(timeout=60)
    try:
        assert "Started the bundled Ollama SIMULATOR" in server.output()  # the child runs under it too
        key = {"X-API-Key": api_key(server.url, admin_headers(server.url))}
        chat = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": False}
        answer = httpx.post(f"{server.url}/api/chat", json=chat, headers=key, timeout=30)
        assert answer.status_code == 200 and answer.json()["done"] is True
        assert httpx.get(f"{server.url}/ready", timeout=10).json() == {"ready": True}
    finally:
        server.stop()
    assert server.process.returncode == 0, server.output()
    assert "PR_SET_MDWE failed" not in server.output()
