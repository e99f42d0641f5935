"""The mixed-model trace and its summary, without I/O (``bench/trace.py`` replays it).

A trace is a list of arrivals: when (seconds from the start), which model, which class of
client. Three models with skewed popularity, three classes with different priorities; the
first half arrives at ``loads[0]`` x capacity, the second at ``loads[1]`` x capacity, Poisson.
Capacity is what one slot serves when no model ever has to be swapped in (``bench/trace.py``'s
default), or, with ``--capacity arrival-order``, what it serves in arrival order: one
generation, plus a swap whenever the next request's model differs from the last one's
(probability ``1 - sum(p^2)``).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

MODELS = ("alpha:latest", "beta:latest", "gamma:latest")
MODEL_WEIGHTS = (0.5, 0.3, 0.2)
# class -> (base priority, share of the requests): interactive users, an app, a batch job.
CLASSES = {"interactive": (1, 0.2), "app": (3, 0.5), "batch": (5, 0.3)}


@dataclass(frozen=True)
class Arrival:
    """One request of the trace."""

    at: float  # seconds from the start
    model: str
    klass: str


@dataclass(frozen=True)
class Outcome:
    """What the gateway made of one arrival."""

    arrival: Arrival
    status: int
    wait_s: float  # queue wait the gateway reported (X-Seadragon-Queue-Wait)
    error: str | None = None  # the body of a failed answer


def service_s(generation_s: float, load_s: float) -> float:
    """Mean seconds one request holds the slot in arrival order (its generation and expected swap)."""
    return generation_s + (1 - sum(p * p for p in MODEL_WEIGHTS)) * load_s


def make_trace(requests: int, capacity: float, loads: tuple[float, float], seed: int = 12) -> list[Arrival]:
    """``requests`` arrivals, half at each load factor (fractions of ``capacity``, requests per second)."""
    rng = random.Random(seed)
    names = list(CLASSES)
    shares = [CLASSES[name][1] for name in names]
    arrivals, now = [], 0.0
    for index in range(requests):
        rate = loads[0 if index < requests // 2 else 1] * capacity
        now += rng.expovariate(rate)
        model = rng.choices(MODELS, MODEL_WEIGHTS)[0]
        arrivals.append(Arrival(round(now, 3), model, rng.choices(names, shares)[0]))
    return arrivals


def greedy_swaps(trace: list[Arrival], generation_s: float, load_s: float) -> int:
    """Swaps of an offline replay that always serves a waiting request for the loaded model
    first (oldest first; else the oldest request), priorities ignored: about the fewest any
    reordering of the queue can reach on this trace, a reference for the measured runs."""
    clock, loaded, swaps, index, queue = 0.0, None, 0, 0, []
    while index < len(trace) or queue:
        if not queue:
            clock = max(clock, trace[index].at)
        while index < len(trace) and trace[index].at <= clock:
            queue.append(trace[index])
            index += 1
        chosen = next((a for a in queue if a.model == loaded), queue[0])
        queue.remove(chosen)
        if chosen.model != loaded:
            swaps, loaded, clock = swaps + 1, chosen.model, clock + load_s
        clock += generation_s
    return swaps


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ranked = sorted(values)
    return ranked[max(0, math.ceil(fraction * len(ranked)) - 1)]


def waits_by_class(outcomes: list[Outcome]) -> dict[str, dict[str, float]]:
    """Mean, p95 and max wait per class (seconds), and how many were answered 200."""
    summary = {}
    for name in CLASSES:
        waits = [o.wait_s for o in outcomes if o.arrival.klass == name and o.status == 200]
        summary[name] = {
            "n": len(waits),
            "mean": sum(waits) / len(waits) if waits else 0.0,
            "p95": percentile(waits, 0.95),
            "max": max(waits, default=0.0),
        }
    return summary


def table(results: dict[str, dict], load_s: float) -> str:
    """One Markdown table: per configuration, swaps, loading time and waits per class."""
    head = "| configuration | swaps | GPU s loading | failed | " + " | ".join(
        f"{name} mean / p95 / max wait (s)" for name in CLASSES
    )
    lines = [head + " |", "|" + "---|" * (4 + len(CLASSES))]
    for name, result in results.items():
        waits = result["waits"]
        cells = [f"{w['mean']:.1f} / {w['p95']:.1f} / {w['max']:.1f}" for w in waits.values()]
        row = [name, str(result["swaps"]), f"{result['swaps'] * load_s:.0f}", str(result["failed"]), *cells]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)
