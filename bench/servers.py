"""Which ASGI server runs the gateway fastest: the measurement behind the run command's choice.

    .venv/bin/python -m bench.servers            # 6 s per load, about 2 minutes
    .venv/bin/python -m bench.servers --seconds 3

Each candidate serves ``asgi:app`` (the whole gateway, API key auth, queue and
request log on) in front of the simulator; wrk sends S1's request at c=1 and
S2's at c=64. CPU is the server's whole process tree (granian's Rust threads
and workers included). Granian is not a requirement of the project: it is
measured when installed (``.venv/bin/pip install granian``) and skipped if not.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from bench.loadgen import run_wrk
from bench.procs import Service, cpu_seconds, process_tree
from bench.report import fmt
from bench.scenarios import CHAT, SMALL_REPLY_TOKENS, chat_body
from bench.stack import HOST, ROOT, _clean_env, prepare_gateway, sim_config, start_simulator

BIN = Path(sys.executable).parent


def candidates(host: str, port: int) -> dict[str, list[str]]:
    """Server name -> the command that serves the gateway with it."""
    bind = ["--host", host, "--port", str(port)]
    uvicorn = [str(BIN / "uvicorn"), "--no-access-log", *bind]
    return {
        "uvicorn, uvloop + httptools (default)": [
            *uvicorn,
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "asgi:app",
        ],
        "uvicorn, asyncio + h11": [*uvicorn, "--loop", "asyncio", "--http", "h11", "asgi:app"],
        "hypercorn, uvloop": [
            str(BIN / "hypercorn"),
            "--worker-class",
            "uvloop",
            "-b",
            f"{host}:{port}",
            "asgi:app",
        ],
        "granian, uvloop": [
            str(BIN / "granian"),
            "--interface",
            "asgi",
            "--loop",
            "uvloop",
            "--no-ws",
            *bind,
            "asgi:app",
        ],
    }


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its children."""
    return sum(cpu_seconds(p) for p in process_tree(pid))


def measure(argv: list[str], setup, workdir: Path, key: str, seconds: float) -> list[str]:
    """The cells of one server's row: c=1 p50, c=1 CPU/request, c=64 req/s, c=64 CPU/request."""
    env = {**_clean_env(), **setup.env}
    service = Service("gateway", argv, port=setup.port, env=env, cwd=ROOT, log_path=workdir / "server.log")
    service.start(f"http://{HOST}:{setup.port}/")
    try:
        url, body = f"http://{HOST}:{setup.port}{CHAT}", chat_body(SMALL_REPLY_TOKENS, stream=False)
        headers = {"X-API-Key": key}
        run_wrk(url, body, headers, connections=4, threads=1, seconds=1)  # warm up
        cells = []
        for connections in (1, 64):
            before = tree_cpu(service.pid)
            threads = min(2, connections)
            result = run_wrk(url, body, headers, connections=connections, threads=threads, seconds=seconds)
            cpu_us = (tree_cpu(service.pid) - before) / max(1, result.requests) * 1e6
            first = fmt(result.p50_ms) if connections == 1 else fmt(result.rps)
            cells += [first, fmt(cpu_us), str(result.errors)]
        return cells
    finally:
        service.stop()


def main(argv: list[str] | None = None) -> int:
    """Measure every installed candidate and print one Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="wrk duration per load (default 6)")
    args = parser.parse_args(argv)
    header = "| server | c=1 p50 ms | c=1 CPU µs/req | errors | c=64 req/s | c=64 CPU µs/req | errors |"
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory(prefix="bench-servers-") as tmp:
        workdir = Path(tmp)
        simulator = start_simulator(workdir, sim_config())
        try:
            setup = prepare_gateway(workdir, f"http://{HOST}:{simulator.port}", 2000, [10])
            for name, command in candidates(HOST, setup.port).items():
                if shutil.which(command[0]) is None:
                    lines.append(f"| {name} | not installed | | | | | |")
                    continue
                cells = measure(command, setup, workdir, setup.keys[10], args.seconds)
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
                print(lines[-1], flush=True)
        finally:
            simulator.stop()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
