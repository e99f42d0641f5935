#!/usr/bin/env bash
# Create .venv at the repository root and install the requirements into it (again only when a
# requirements file has changed): the runtime's (requirements.txt), or with --dev the tests', lint's
# and the client SDKs' too (requirements-dev.txt, which includes the first).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "seadragon: creating the virtualenv .venv" >&2
  "$PYTHON" -m venv .venv
fi
install() {  # install FILE when the hash of the requirement files has moved since STAMP was written
  local file=$1 stamp=$2 want
  want=$(cat "${@:3}" | sha256sum | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "seadragon: installing $file into .venv" >&2
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -r "$file"
    echo "$want" > "$stamp"
  fi
}
if [ "${1:-}" = "--dev" ]; then
  install requirements-dev.txt .venv/.requirements-dev.sha256 requirements.txt requirements-dev.txt
  # requirements-dev.txt includes the runtime's: the run command need not install it again.
  sha256sum < requirements.txt | cut -d' ' -f1 > .venv/.requirements.sha256
else
  install requirements.txt .venv/.requirements.sha256 requirements.txt
fi
