#!/bin/sh
# The image's entry point (docs/contract.md §15). It execs, so the gateway (or the simulator) is the
# container's main process and receives SIGTERM itself.
#   IMAGE                      the gateway on $SEADRAGON_HOST:$SEADRAGON_PORT (0.0.0.0:8080)
#   IMAGE simulator [OPTIONS]  the bundled Ollama simulator (README "The bundled Ollama simulator"),
#                              on 0.0.0.0:11434 unless SEADRAGON_SIM_HOST/_PORT or OPTIONS say otherwise
#   IMAGE COMMAND [ARGS]       any other command, e.g. `flask --app wsgi create-admin NAME`
set -eu
case "${1:-gateway}" in
  gateway)
    [ "$#" -gt 0 ] && shift
    exec python3 /app/asgi.py "$@"
    ;;
  simulator)
    shift
    export SEADRAGON_SIM_HOST="${SEADRAGON_SIM_HOST:-0.0.0.0}"
    exec python3 -m simulator "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
