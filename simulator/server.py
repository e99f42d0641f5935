"""Serving the simulator: blocking (``run``), in a background thread, or in a child process."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from simulator.app import Simulator, create_app
from simulator.config import ConfigError, SimulatorConfig

ROOT = Path(__file__).resolve().parent.parent
Predicate = Callable[[dict[str, Any]], Any]


def _fast(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def uvicorn_config(
    app: Simulator, *, log_level: str = "warning", access_log: bool = False, **extra: Any
) -> uvicorn.Config:
    """uvicorn settings for speed and quiet: uvloop + httptools, no websockets, no Server header."""
    return uvicorn.Config(
        app,
        loop="uvloop" if _fast("uvloop") else "asyncio",
        http="httptools" if _fast("httptools") else "h11",
        ws="none",  # also keeps websockets' deprecation warnings out of test runs
        lifespan="off",
        log_level=log_level,
        access_log=access_log,
        server_header=False,
        proxy_headers=False,
        backlog=4096,  # 1,000 clients connecting at once must not be refused
        timeout_graceful_shutdown=1,
        **extra,
    )


def listening_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A bound, listening TCP socket (port 0 picks a free one, with no race)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(4096)
    except OSError:
        sock.close()
        raise
    return sock


class SimulatorHandle:
    """A running simulator: its ``url``, its record, run-time changes, and ``stop()``."""

    url: str

    def stats(self) -> dict[str, Any]:
        """What ``GET /_sim/stats`` returns."""
        return httpx.get(f"{self.url}/_sim/stats", timeout=10).raise_for_status().json()

    def reset(self) -> None:
        """Clear the record and restore the start-up configuration and models."""
        httpx.post(f"{self.url}/_sim/reset", timeout=10).raise_for_status()

    def configure(self, **changes: Any) -> SimulatorConfig:
        """Change settings while running (e.g. ``tokens=5, token_delay=0``); returns the new config."""
        response = httpx.post(f"{self.url}/_sim/config", json=changes, timeout=10)
        if response.status_code != 200:
            raise ConfigError(response.json()["error"])
        data = response.json()
        return SimulatorConfig(**{**data, "models": tuple(data["models"])})

    def entries(self, path: str | None = None) -> list[dict[str, Any]]:
        """The request log (oldest first), optionally only for one path."""
        return [e for e in self.stats()["log"] if path is None or e["path"] == path]

    def wait_for(self, predicate: Predicate, timeout: float = 5.0, interval: float = 0.02) -> dict[str, Any]:
        """Poll the stats until ``predicate(stats)`` is true; TimeoutError with the last stats otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if predicate(stats):
                return stats
            if time.monotonic() > deadline:
                raise TimeoutError(f"simulator state never matched; last stats: {_summary(stats)}")
            time.sleep(interval)

    async def wait_for_async(
        self, predicate: Predicate, timeout: float = 5.0, interval: float = 0.02
    ) -> dict[str, Any]:
        """``wait_for`` for async tests: sleeps without blocking the test's event loop."""
        deadline = time.monotonic() + timeout
        while True:
            stats = await asyncio.to_thread(self.stats)
            if predicate(stats):
                return stats
            if time.monotonic() > deadline:
                raise TimeoutError(f"simulator state never matched; last stats: {_summary(stats)}")
            await asyncio.sleep(interval)

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        raise NotImplementedError

    def __enter__(self) -> SimulatorHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ThreadHandle(SimulatorHandle):
    """A simulator served by uvicorn on its own event loop in a daemon thread of this process."""

    def __init__(self, app: Simulator, server: uvicorn.Server, thread: threading.Thread, sock: socket.socket):
        self.app = app
        self.state = app.state  # direct access; its record methods are thread-safe
        self.server = server
        self.thread = thread
        self._sock = sock
        host, port = sock.getsockname()[:2]
        self.port: int = port
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{port}"

    def stats(self) -> dict[str, Any]:
        """The record, read directly (no HTTP round trip, safe from any thread)."""
        return self.state.snapshot()

    def reset(self) -> None:
        """Clear the record and restore the start-up configuration and models."""
        self.state.reset()

    def configure(self, **changes: Any) -> SimulatorConfig:
        """Change settings while running; returns the new config."""
        return self.state.configure(changes)

    def stop(self, timeout: float = 5.0) -> None:
        """Ask uvicorn to exit; force it after a grace period; close the socket."""
        if self.thread.is_alive():
            self.server.should_exit = True
            self.thread.join(timeout)
            if self.thread.is_alive():
                self.server.force_exit = True
                self.thread.join(timeout)
        self._sock.close()


def serve_in_thread(config: SimulatorConfig | None = None, *, port: int = 0, **changes: Any) -> ThreadHandle:
    """Start a simulator on 127.0.0.1 (a free port unless ``port``) in a background thread."""
    config = (config or SimulatorConfig()).updated(changes) if changes else (config or SimulatorConfig())
    app = create_app(config)
    sock = listening_socket(config.host, port)
    # log_config=None: leave the test process's logging configuration alone.
    server = uvicorn.Server(uvicorn_config(app, log_config=None))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"ollama-simulator-{sock.getsockname()[1]}"
    )
    thread.daemon = True
    thread.start()
    handle = ThreadHandle(app, server, thread, sock)
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            handle.stop()
            raise RuntimeError("the Ollama simulator did not start")
        time.sleep(0.005)
    return handle


class ProcessHandle(SimulatorHandle):
    """A simulator in a child ``python -m simulator`` process (its own GIL: for load and benchmarks)."""

    def __init__(self, process: subprocess.Popen[bytes], url: str) -> None:
        self.process = process
        self.url = url

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def serve_in_subprocess(
    config: SimulatorConfig | None = None,
    *,
    port: int = 0,
    timeout: float = 20.0,
    log_level: str = "warning",
    **changes: Any,
) -> ProcessHandle:
    """Start ``python -m simulator`` on a socket made here (no port race) and wait until it answers."""
    config = (config or SimulatorConfig()).updated(changes) if changes else (config or SimulatorConfig())
    sock = listening_socket(config.host, port)
    host, bound = sock.getsockname()[:2]
    url = f"http://{f'[{host}]' if ':' in host else host}:{bound}"
    python_path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": python_path}
    command = [sys.executable, "-m", "simulator", f"--fd={sock.fileno()}", f"--log-level={log_level}"]
    command += config.to_args()
    try:
        process = subprocess.Popen(command, cwd=ROOT, env=env, pass_fds=[sock.fileno()])
    finally:
        sock.close()  # the child has its own copy
    handle = ProcessHandle(process, url)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the Ollama simulator exited with status {process.returncode}")
        try:
            httpx.get(f"{url}/_sim/config", timeout=1).raise_for_status()
            return handle
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                handle.stop()
                raise RuntimeError(f"the Ollama simulator did not answer within {timeout}s") from None
            time.sleep(0.05)


def run(
    config: SimulatorConfig | None = None,
    *,
    fd: int | None = None,
    access_log: bool = False,
    log_level: str = "info",
) -> None:
    """Serve in the foreground until interrupted (what ``python -m simulator`` does)."""
    config = config or SimulatorConfig()
    app = create_app(config)
    where: dict[str, Any] = {"host": config.host, "port": config.port} if fd is None else {}
    server = uvicorn.Server(uvicorn_config(app, log_level=log_level, access_log=access_log, **where))
    # uvicorn's own fd option assumes a Unix socket; ours is TCP, so it is handed over as a socket.
    server.run(sockets=None if fd is None else [socket.socket(fileno=fd)])


def _summary(stats: dict[str, Any]) -> str:
    brief = {k: v for k, v in stats.items() if k != "log"}
    brief["last"] = [(e["path"], e["outcome"], e["chunks"]) for e in stats["log"][-5:]]
    return str(brief)
