"""``flask --app wsgi prune-requests [--days N]`` (README "Request log")."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from common.settings import ROOT
from tests.conftest import settings_env
from tests.proxy.rows_by_age import add_rows
from tests.proxy.support import log_rows


def test_it_removes_rows_older_than_the_retention_and_says_how_many(app, settings):
    add_rows(settings, 200, 120, 95, 40, 3)
    result = app.test_cli_runner().invoke(args=["prune-requests"])  # the default: 90 days
    assert result.exit_code == 0, result.output
    assert "Removed 3 request-log rows older than 90 days." in result.output
    assert len(log_rows(settings)) == 2


def test_days_overrides_the_retention(app, settings):
    add_rows(settings, 40, 3)
    result = app.test_cli_runner().invoke(args=["prune-requests", "--days", "30"])
    assert "Removed 1 request-log row older than 30 days." in result.output
    assert [row.request_id for row in log_rows(settings)] == ["aged-3-1"]
    refused = app.test_cli_runner().invoke(args=["prune-requests", "--days", "0"])
    assert refused.exit_code != 0 and "--days" in refused.output


@pytest.mark.costly  # a `flask` process
def test_it_works_on_a_fresh_checkout(tmp_path):
    env = {**os.environ, **settings_env(tmp_path / "fresh", log_retention_days=7)}
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "prune-requests"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Removed 0 request-log rows older than 7 days." in result.stdout
