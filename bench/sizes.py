"""How big each scenario is: the issue's sizes, and tiny ones for a smoke test (``--quick``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    """Every count and duration the scenarios use."""

    s1_seconds: float  # wrk run, one connection
    s1_requests: int  # h2load run, one connection
    s2_connections: int
    s2_seconds: float
    s3_streams: int
    s3_tokens: int
    s3_delay_ms: float
    s4_tokens: int
    s4_runs: int
    s5_streams: int
    s5_tokens: int
    s5_delay_ms: float
    q1_requests: int


FULL = Sizes(
    s1_seconds=5,
    s1_requests=1000,
    s2_connections=64,
    s2_seconds=10,
    s3_streams=200,
    s3_tokens=100,
    s3_delay_ms=20,
    s4_tokens=20_000,
    s4_runs=3,
    s5_streams=1000,
    s5_tokens=100,
    s5_delay_ms=100,
    q1_requests=10_000,
)

QUICK = Sizes(
    s1_seconds=1,
    s1_requests=50,
    s2_connections=8,
    s2_seconds=1,
    s3_streams=20,
    s3_tokens=10,
    s3_delay_ms=20,
    s4_tokens=2000,
    s4_runs=1,
    s5_streams=50,
    s5_tokens=10,
    s5_delay_ms=50,
    q1_requests=200,
)
