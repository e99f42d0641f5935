"""``python -m simulator``: a fake Ollama on 127.0.0.1:11434 (flags override SEADRAGON_SIM_* variables)."""

from __future__ import annotations

import argparse
import sys

from simulator.config import ConfigError, SimulatorConfig
from simulator.server import run


def parse_args(argv: list[str] | None = None) -> tuple[SimulatorConfig, argparse.Namespace]:
    """The configuration the command line and environment describe."""
    parser = argparse.ArgumentParser(
        prog="python -m simulator",
        description="Bundled Ollama simulator: Ollama's wire format with fake tokens.",
    )
    parser.add_argument("--host", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", help="listen port (default 11434)")
    parser.add_argument("--tokens", help="tokens per generation (default 20)")
    parser.add_argument("--token-delay", help="seconds between tokens (default 0.02)")
    parser.add_argument("--first-token-delay", help="seconds before the first token (default 0)")
    parser.add_argument("--models", help="comma list of installed models")
    parser.add_argument("--num-parallel", help="generations at once, like OLLAMA_NUM_PARALLEL (0: no cap)")
    parser.add_argument("--max-queue", help="requests waiting for a slot before 503, like OLLAMA_MAX_QUEUE")
    parser.add_argument("--fault", help="a fault spec applied to every request, e.g. status=500")
    parser.add_argument("--embedding-dim", help="length of embedding vectors (default 384)")
    parser.add_argument("--version", help="what /api/version reports")
    parser.add_argument("--log-limit", help="request-log entries kept for /_sim/stats")
    parser.add_argument("--max-loaded", help="models in VRAM at once, LRU evicted (0: no cap)")
    parser.add_argument("--load-time", help="seconds to load a model that is not in VRAM (default 0)")
    parser.add_argument("--default-num-ctx", help="the automatic num_ctx of a request without one (4096)")
    parser.add_argument(
        "--prompt-eval-rate", help="seconds per prompt token not in the prefix cache (default 0)"
    )
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="uvicorn's log level",
    )
    # A listening TCP socket handed over by a parent process (serve_in_subprocess).
    parser.add_argument("--fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    overrides = {
        name: value
        for name, value in vars(args).items()
        if value is not None and name not in ("access_log", "fd", "log_level")
    }
    base = SimulatorConfig.from_env()
    return base.updated(overrides), args


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve until interrupted."""
    try:
        config, args = parse_args(argv)
    except ConfigError as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 2
    if args.log_level in ("debug", "info"):
        where = f"fd {args.fd}" if args.fd is not None else f"http://{config.host}:{config.port}"
        print(
            f"Ollama SIMULATOR (fake tokens, not a real model) on {where}: "
            f"models {', '.join(config.models)}; {config.tokens} tokens, {config.token_delay}s apart",
            file=sys.stderr,
            flush=True,
        )
    run(config, fd=args.fd, access_log=args.access_log, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
