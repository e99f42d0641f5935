"""Chaos (docs/contract.md §10) through bench/chaos.py: 1,000 requests, 30 % of the clients leaving,
5 % of upstream answers failing; nothing left behind and exactly one right row per request."""

from __future__ import annotations

import pytest

from bench.chaos import CLIENT_LEFT, run
from tests.conftest import fresh_redis_url

pytestmark = [pytest.mark.costly, pytest.mark.timeout(240)]  # real processes, faults and kills


def test_a_thousand_requests_with_departures_and_faults_leave_nothing_behind(tmp_path):
    report = run(tmp_path, requests=1000, concurrency=32, seed=3)
    assert report.problems == []
    assert report.rows == 1000
    assert report.statuses[CLIENT_LEFT] > 100  # the departures really happened
    assert report.statuses[502] > 0  # and so did the upstream faults


def test_two_instances_on_redis_with_one_killed_mid_run_leave_nothing_behind(tmp_path):
    report = run(tmp_path, requests=300, concurrency=16, seed=5, redis_url=fresh_redis_url(11))
    assert report.problems == []  # the survivor's rows are exact; the shared queue emptied within the lease
    assert report.rows == 150
    assert report.killed_rows <= 150
