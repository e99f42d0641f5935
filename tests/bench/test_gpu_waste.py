"""``bench/gpu_waste.py``: the two §12 benchmarks through the real gateway, small and fast.

The figures come from the full run (README "Keeping the GPU on useful work"); here both
benchmarks must run every request through both configurations, and the server side must
reload less.
"""

from __future__ import annotations

import re

import pytest

from bench import gpu_waste, gpu_waste_report


@pytest.mark.costly  # four gateways and eight simulators
def test_both_benchmarks_run_every_request_and_server_options_reload_less(capsys):
    status = gpu_waste.main(["--quick", "--runs", "1"])
    out = capsys.readouterr().out
    mixed = re.findall(r"^\| 1 \| (LOAD_OPTIONS[^|]+)\| (\d+) \|", out, re.M)
    assert [name.strip() for name, _ in mixed] == list(gpu_waste.mixed_configs()), out
    client, server = (int(reloads) for _, reloads in mixed)
    assert client > 0 and server == 0, out
    turns = re.findall(r"^\| 1 \| (STICKY_MAX_DELAY=\d+) \| (\d+) \|", out, re.M)
    quick = gpu_waste.QUICK
    assert turns == [
        (name, str(quick.users * quick.conversations * quick.turns)) for name in gpu_waste.turn_configs()
    ]
    assert status in (0, 1) and "reloads 0 vs" in out


def test_the_goals_are_judged_run_by_run():
    mixed = [
        {"run": 1, "config": "client", "reloads": 20, "p95": 5.0},
        {"run": 1, "config": "server", "reloads": 2, "p95": 5.0},
        {"run": 2, "config": "client", "reloads": 20, "p95": 5.0},
        {"run": 2, "config": "server", "reloads": 3, "p95": 1.0},
    ]
    assert [ok for _, ok in gpu_waste_report.mixed_goals(mixed)] == [True, True, False, True]
    turns = [
        {"run": 1, "config": "sticky", "eval_s": 10.0, "p95": 0.3},
        {"run": 1, "config": "loose", "eval_s": 30.0, "p95": 0.3},
    ]
    assert [ok for _, ok in gpu_waste_report.turns_goals(turns)] == [True, False]
