"""bench/hostile.py runs end to end for a few seconds in each mode (issue 19's probe)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| ([A-Za-z -]+) \| (\d+) \| [\d]+ ms \| [\d]+ ms \| [\d]+ ms \| (\d+) ", re.MULTILINE)

pytestmark = [pytest.mark.costly, pytest.mark.timeout(180)]  # a real gateway and hostile sockets


def probe(*argv: str) -> subprocess.CompletedProcess:
    """Run the probe for a few seconds with a small connection cap."""
    return subprocess.run(
        [sys.executable, "-m", "bench.hostile", "--seconds", "4", "--ramp", "0.5", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )


@pytest.mark.parametrize(
    "argv",
    [
        ("--mode", "idle", "--sockets", "60", "--addresses", "1", "--env", "MAX_CONNECTIONS=40"),
        ("--mode", "idle", "--sockets", "60", "--addresses", "30", "--env", "MAX_CONNECTIONS=40"),
        ("--mode", "slowbody", "--sockets", "12", "--addresses", "12", "--drip", "0.2"),
        # Within the cap: heads dripped by sockets that come back at once when closed churn faster than a
        # 40-place cap turns over (README "Limits at the door" measures that flood at 20,000 sockets).
        (
            "--mode",
            "drip",
            "--sockets",
            "30",
            "--addresses",
            "5",
            "--drip",
            "0.5",
            "--env",
            "MAX_CONNECTIONS=40",
        ),
    ],
    ids=["idle-1-address", "idle-30-addresses", "slow-bodies", "dripping-heads"],
)
def test_every_mode_reports_the_key_holder_and_the_admin_all_answered(argv):
    done = probe(*argv, "--budget", "5")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {name: (int(count), int(failures)) for name, count, failures in ROW.findall(done.stdout)}
    assert set(rows) == {"tags", "chat", "tags fresh", "chat fresh", "admin sign-in fresh", "admin API fresh"}
    assert all(count >= 1 and failures == 0 for count, failures in rows.values()), rows
    assert f"hostile sockets ({argv[1]})" in done.stdout
