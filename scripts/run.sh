#!/usr/bin/env bash
# Start the whole gateway on http://127.0.0.1:8080 (see README for settings).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/python asgi.py "$@"
