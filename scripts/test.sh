#!/usr/bin/env bash
# Run the test suite; arguments after the optional flag go to pytest (README, Test).
#
#   scripts/test.sh           the whole suite, as CI runs it (.ci/run: `scripts/test.sh -q -rfEs`)
#   scripts/test.sh --fast    local runs in under a minute: leaves out the tests marked `costly`
#                             (about 0.3 s or more each: a gateway served on a socket, real timeouts,
#                             a child process), `slow`, `browser` and `scaleout`, and runs the rest
#                             on every core with pytest-xdist (`-n auto`; pass `-n 0` for one process).
#                             1,585 of the 1,995 tests (2026-12-08; 1,124 of 1,417 took ~40 s of
#                             wall time on the 2-core development machine on 2026-12-02).
#   scripts/test.sh --most    everything but `slow`, `browser` and `scaleout`, in one process:
#                             1,332 tests in ~5.5 min of wall time (~2.5 min of CPU) on that machine.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --dev
case "${1:-}" in
  --fast)
    shift
    exec .venv/bin/python -m pytest -m "not slow and not browser and not scaleout and not costly" -n auto "$@"
    ;;
  --most)
    shift
    exec .venv/bin/python -m pytest -m "not slow and not browser and not scaleout" "$@"
    ;;
esac
exec .venv/bin/python -m pytest "$@"
