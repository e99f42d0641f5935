"""``bench/trace.py``: the mixed-model trace replayed through the real gateway, small and fast.

The figures the issue asks for come from the full run (README "Benchmarks"); here a short trace
must go through all three configurations, every request answered, and affinity must swap less.
"""

from __future__ import annotations

import re

import pytest

from bench import trace
from bench.trace_model import (
    CLASSES,
    MODELS,
    Arrival,
    Outcome,
    greedy_swaps,
    make_trace,
    percentile,
    service_s,
    waits_by_class,
)


def test_the_trace_is_reproducible_and_arrives_at_the_two_rates():
    service = service_s(0.5, 2.0)
    assert service == pytest.approx(0.5 + 0.62 * 2.0)  # a swap unless two in a row share a model
    arrivals = make_trace(400, capacity=1 / service, loads=(0.8, 1.2), seed=3)
    assert arrivals == make_trace(400, capacity=1 / service, loads=(0.8, 1.2), seed=3)
    assert [a.at for a in arrivals] == sorted(a.at for a in arrivals)
    first, second = arrivals[:200], arrivals[200:]
    low = len(first) / first[-1].at * service  # arrivals per mean service time
    high = len(second) / (second[-1].at - first[-1].at) * service
    assert 0.65 < low < 0.95 and 1.0 < high < 1.45
    assert {a.model for a in arrivals} == set(MODELS) and {a.klass for a in arrivals} == set(CLASSES)


def test_waits_are_summarised_per_class_from_answered_requests_only():
    outcomes = [
        Outcome(Arrival(0, MODELS[0], "batch"), 200, 1.0),
        Outcome(Arrival(1, MODELS[0], "batch"), 200, 3.0),
        Outcome(Arrival(2, MODELS[1], "batch"), 503, 99.0),
    ]
    summary = waits_by_class(outcomes)
    assert summary["batch"] == {"n": 2, "mean": 2.0, "p95": 3.0, "max": 3.0}
    assert summary["interactive"]["n"] == 0
    assert percentile([5, 1, 2, 4, 3], 0.95) == 5 and percentile([], 0.5) == 0.0


@pytest.mark.costly  # a trace through three gateways
def test_a_short_trace_runs_all_three_configurations_and_affinity_swaps_less(capsys):
    args = ["--requests", "16", "--generation", "0.05", "--load-time", "0.3", "--max-delay", "2"]
    status = trace.main(args)
    out = capsys.readouterr().out
    rows = {
        m.group(1): m.groups()
        for m in re.finditer(r"^\| (\w)\. [^|]+\| (\d+) \| [\d.]+ \| (\d+) \|", out, re.M)
    }
    assert set(rows) == {"a", "b", "c"}, out
    assert all(failed == "0" for _, _, failed in rows.values()), out
    assert int(rows["c"][1]) < int(rows["a"][1]), out
    assert status in (0, 1) and "swaps at least 50 % fewer" in out


def test_the_offline_reference_serves_the_loaded_model_first():
    a, b = MODELS[0], MODELS[1]
    # Arrival order would swap four times (a b a b); serving a's waiting request first, twice.
    trace = [Arrival(0.0, a, "app"), Arrival(0.1, b, "app"), Arrival(0.2, a, "app"), Arrival(0.3, b, "app")]
    assert greedy_swaps(trace, generation_s=1.0, load_s=1.0) == 2
    # Nothing waits when each arrives after the last one finished: every change of model swaps.
    spaced = [Arrival(10.0 * i, m, "app") for i, m in enumerate([a, b, a, b])]
    assert greedy_swaps(spaced, generation_s=1.0, load_s=1.0) == 4
