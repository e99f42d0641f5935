"""Serving until SIGTERM/SIGINT and shutting down as docs/contract.md §10 says.

uvicorn's own sequence on a signal: stop listening, close idle connections,
wait up to ``timeout_graceful_shutdown`` for the busy ones, cancel what is
left, then the lifespan shutdown (where the gateway flushes its request log).
Two things are added here:

* the app hears that shutdown starts *before* that wait (``begin_shutdown``),
  so requests still queued get their 503 at once rather than after the grace,
  and the app itself ends streams after ``SHUTDOWN_GRACE`` seconds with an
  in-band error; uvicorn's own timeout is a backstop a little later;
* uvicorn re-raises the signal it caught once it is done, which makes a clean
  shutdown end with status 143 (SIGTERM) or a KeyboardInterrupt traceback
  (SIGINT) and skips ``atexit`` (so the simulator child outlived it). A handled
  signal ends here with exit status 0 instead.

Children (the bundled simulator) die with the server even on ``kill -9``.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket
import subprocess
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import uvicorn

# Seconds uvicorn waits past SHUTDOWN_GRACE before cancelling what the app did not end itself.
BACKSTOP = 5.0
CHILD_STOP_TIMEOUT = 5.0  # seconds a child may take to exit after SIGTERM before SIGKILL
_PR_SET_PDEATHSIG = 1


class GracefulServer(uvicorn.Server):
    """uvicorn's server that tells the app when shutdown starts and exits 0 on a handled signal."""

    def __init__(self, config: uvicorn.Config, on_shutdown: Callable[[], Awaitable[None]] | None) -> None:
        super().__init__(config)
        self._on_shutdown = on_shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop accepting, let the app fail what waits, then uvicorn's graceful sequence."""
        for server in self.servers:
            server.close()  # no new connections from here on (uvicorn closes them again: harmless)
        if self._on_shutdown is not None:
            await self._on_shutdown()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """uvicorn's signal handlers, without re-raising the handled signal afterwards."""
        with super().capture_signals():
            yield
            self._captured_signals.clear()


def run_gracefully(app: Any, *, grace: float, **options: Any) -> None:
    """Serve ``app`` with uvicorn ``options`` until SIGTERM/SIGINT; active streams get ``grace`` seconds."""
    config = uvicorn.Config(app, timeout_graceful_shutdown=round(grace + BACKSTOP), **options)
    GracefulServer(config, getattr(app, "begin_shutdown", None)).run()


def die_with_parent() -> None:
    """In a child before exec: the kernel sends it SIGTERM when its parent dies, even by SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_child(process: subprocess.Popen) -> None:
    """Stop a child process and wait for it (SIGTERM, then SIGKILL after a few seconds)."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(CHILD_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
