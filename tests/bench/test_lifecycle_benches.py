"""The lifecycle benchmarks run end to end for a few seconds: bench/soak.py and bench/slow_readers.py."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.soak import Sample, growth

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| (\d+) \| ([\d.]+) \| (\d+) \| (\d+) \| (\d+) \|$", re.MULTILINE)

pytestmark = pytest.mark.timeout(180)


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=150, check=False
    )


@pytest.mark.costly  # a soak
def test_soak_samples_rss_and_descriptors_into_a_table_and_judges_the_growth():
    done = run("bench/soak.py", "--minutes", "0.15", "--interval", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = ROW.findall(done.stdout)
    assert len(rows) >= 4
    assert all(float(rss) > 10 and int(fds) > 3 for _, rss, fds, _, _ in rows)
    assert int(rows[-1][3]) > 20 and rows[-1][4] == "0"  # requests were served, none failed
    assert "after warm-up: RSS" in done.stdout


def test_growth_is_measured_from_the_end_of_the_warm_up():
    samples = [Sample(t, rss, 10, 0, 0) for t, rss in enumerate([50.0, 100.0, 100.0, 102.0, 104.0])]
    assert growth(samples, "rss_mib") == pytest.approx(0.04)
    assert growth(samples, "fds") == 0.0


@pytest.mark.costly  # slow readers against a real gateway
def test_slow_readers_cost_the_gateway_a_bounded_buffer_each():
    done = run("bench/slow_readers.py", "--readers", "10", "--seconds", "4")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "10/10 slow readers streaming" in done.stdout
    per_reader = float(re.search(r"([\d.]+) MiB per reader", done.stdout).group(1))
    assert per_reader < 1.0
