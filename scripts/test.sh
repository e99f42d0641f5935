#!/usr/bin/env bash
# Run the test suite (arguments go to pytest). CI runs it whole; `--fast` first
# leaves out what is slow, drives a browser or needs Redis/PostgreSQL (README, Test).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
if [ "${1:-}" = "--fast" ]; then
  shift
  exec .venv/bin/python -m pytest -m "not slow and not browser and not scaleout" "$@"
fi
exec .venv/bin/python -m pytest "$@"
