"""kill -9 (docs/contract.md §10) through bench/crash.py: acknowledged admin writes survive, the file
opens cleanly, and with Redis a killed instance's slot comes back within its lease."""

from __future__ import annotations

import pytest

from bench.crash import LEASE_BOUND_S, lease_recovery, run_rounds
from tests.conftest import fresh_redis_url

pytestmark = [pytest.mark.costly, pytest.mark.timeout(300)]  # real processes killed with SIGKILL


def test_kill_9_during_admin_writes_loses_no_acknowledged_write_and_the_file_is_sound(tmp_path):
    rounds = run_rounds(3, tmp_path, seed=7)
    assert all(result.integrity == "ok" for result in rounds)
    assert [result.missing for result in rounds] == [
        {"apikey": set(), "whitelist": set(), "token": set()}
    ] * 3
    assert sum(result.writes for result in rounds) > 0  # the kills landed while writes were going on


def test_a_killed_instance_slot_comes_back_to_the_other_instance_within_its_lease(tmp_path):
    seconds = lease_recovery(tmp_path, fresh_redis_url(10))
    assert seconds <= LEASE_BOUND_S
