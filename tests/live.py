"""Run the real gateway (``asgi.py`` under uvicorn) in a subprocess on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """The whole gateway, served as in production, with its own environment."""

    def __init__(self, env: dict[str, str], port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env, "SEADRAGON_HOST": "127.0.0.1", "SEADRAGON_PORT": str(self.port)}
        self.process: subprocess.Popen | None = None
        self.log_path = Path(env.get("SEADRAGON_INSTANCE_DIR", "/tmp")) / f"server-{self.port}.log"
        self.argv = [sys.executable, "asgi.py"]  # what runs it (a test may wrap it)

    def start(self, timeout: float = 60.0) -> LiveServer:
        """Start ``python asgi.py`` and wait until it answers."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # The child keeps its own copy of the descriptor; ours is closed at once.
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited early:\n{self.output()}")
            try:
                if httpx.get(self.url + "/", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gateway did not answer in {timeout}s:\n{self.output()}")

    def output(self) -> str:
        """Everything the server printed so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        """Stop the server cleanly (SIGTERM, then SIGKILL after 10 s)."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
