"""``bench/run.py --quick`` end to end: the real simulator and gateway, every scenario, one table.

Budgets are not asserted here (CI machines are noisy and the sizes are tiny);
what must hold is that the harness runs every scenario against both targets
and reports a figure for each.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.queue_inprocess import parse_line
from bench.run import ALL

ROOT = Path(__file__).resolve().parents[2]
# Figures measured on both targets; a dash there means a scenario silently measured nothing.
BOTH_TARGETS = {
    "S1": "p50 latency, ms (wrk)",
    "S2": "req/s",
    "S3": "complete streams",
    "S4": "chunks/s",
    "S4M": "SSE lines/s",
    "S5": "server RSS peak, MiB",
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, str]:
    """One quick run of the whole benchmark, its exit and the table it wrote."""
    output = tmp_path_factory.mktemp("bench") / "latest.md"
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,  # generous: a loaded CI machine; the run itself is bounded
        check=False,
    )
    return done, output.read_text() if output.exists() else ""


@pytest.mark.slow
def test_the_quick_run_finishes_without_a_harness_error(quick_run):
    done, text = quick_run
    assert done.returncode in (0, 1), f"exit {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert "harness error" not in text


@pytest.mark.slow
def test_every_scenario_reports_a_figure_for_the_simulator_and_the_gateway(quick_run):
    _, text = quick_run
    rows = [row for row in map(parse_line, text.splitlines()) if row is not None]
    assert {row.id for row in rows} == {scenario.id for scenario in ALL}
    for sid, metric in BOTH_TARGETS.items():
        matching = [r for r in rows if r.id == sid and r.metric.startswith(metric)]
        assert matching, f"{sid} has no row {metric!r}"
        assert all(_number(r.direct) > 0 and _number(r.gateway) > 0 for r in matching), matching


@pytest.mark.slow
def test_the_held_queue_is_checked_over_http_and_in_process(quick_run):
    _, text = quick_run
    q1 = [row for row in map(parse_line, text.splitlines()) if row is not None and row.id == "Q1"]
    http = [r for r in q1 if "(HTTP)" in r.metric]
    assert http and all(r.gateway not in (None, "—") for r in http)
    assert any("inversions" in r.metric and r.passed is not None for r in q1)
    assert len(q1) > len(http), "bench/bench_queue.py's rows are missing from the table"


@pytest.mark.slow
def test_every_budget_row_has_a_verdict(quick_run):
    _, text = quick_run
    rows = [row for row in map(parse_line, text.splitlines()) if row is not None]
    assert all(r.passed is not None for r in rows if r.budget)


def _number(cell) -> float:
    return float(str(cell).replace(",", ""))
