"""What one simulator holds in memory: its config, models, slots and the record tests read."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter, deque
from typing import Any

from simulator.config import SimulatorConfig
from simulator.text import normalize_model
from simulator.vram import Vram

# Paths that go through Ollama's scheduler (and so through the slot gate).
INFERENCE_PATHS = frozenset(
    {
        "/api/chat",
        "/api/generate",
        "/api/embed",
        "/api/embeddings",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/responses",
        "/v1/messages",
        "/v1/audio/transcriptions",
    }
)
BODY_RECORD_LIMIT = 64 * 1024


class SlotGate:
    """OLLAMA_NUM_PARALLEL and OLLAMA_MAX_QUEUE: a few running, a bounded line waiting, the rest 503."""

    def __init__(self) -> None:
        self.running = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        """Requests waiting for a slot."""
        return len(self._waiters)  # only pending waiters stay in the line (see release/abandon)

    def try_acquire(self, limit: int, max_queue: int) -> asyncio.Future[None] | bool:
        """True: a slot is ours; False: the line is full; a future: wait on it for a slot."""
        if self.running < limit and not self.waiting:
            self.running += 1
            return True
        if self.waiting >= max_queue:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return waiter

    def abandon(self, waiter: asyncio.Future[None]) -> None:
        """The waiting client left; if a slot was already handed to it, pass the slot on."""
        if waiter.done() and not waiter.cancelled():
            self.release()
        else:
            waiter.cancel()
        try:
            self._waiters.remove(waiter)
        except ValueError:
            pass

    def release(self) -> None:
        """Free a slot, handing it straight to the next waiter so nobody can jump the line."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.running = max(0, self.running - 1)


class SimState:
    """The mutable state of one simulator; record methods are thread-safe so tests can read it."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.initial = config
        self.config = config
        self.gate = SlotGate()
        self._lock = threading.Lock()
        self.models: dict[str, int] = {}
        self.vram = Vram()  # loaded models, for /api/ps and the load-time model
        self.blobs: set[str] = set()
        self._clear_record()
        self._set_models(config.models)

    # -- models -------------------------------------------------------------------------

    def _set_models(self, names: tuple[str, ...] | list[str]) -> None:
        now = time.time_ns()
        self.models = {normalize_model(name): now for name in names}

    def has_model(self, name: str) -> bool:
        """Whether ``name`` (with or without ``:latest``) is installed."""
        return normalize_model(name) in self.models

    def add_model(self, name: str) -> None:
        """Install (or refresh) a model."""
        self.models = {**self.models, normalize_model(name): time.time_ns()}

    def remove_model(self, name: str) -> bool:
        """Uninstall a model; False if it was not there."""
        key = normalize_model(name)
        if key not in self.models:
            return False
        self.models = {k: v for k, v in self.models.items() if k != key}
        self.vram.unload(key)
        return True

    # -- configuration --------------------------------------------------------------------

    def configure(self, changes: dict[str, Any]) -> SimulatorConfig:
        """Apply run-time changes; a new ``models`` list replaces the installed models."""
        config = self.config.updated(changes)
        self.config = config
        if "models" in changes:
            self._set_models(config.models)
        return config

    def reset(self) -> None:
        """Forget the record and go back to the start-up configuration and models."""
        self.config = self.initial
        self._set_models(self.initial.models)
        self.vram = Vram()
        self.blobs = set()
        with self._lock:
            self._clear_record()

    # -- the record -----------------------------------------------------------------------

    def _clear_record(self) -> None:
        self._next_id = 1
        self._log: deque[dict[str, Any]] = deque(maxlen=self.config.log_limit)
        self._active: dict[int, dict[str, Any]] = {}
        self._paths: Counter[str] = Counter()
        self._outcomes: Counter[str] = Counter()
        self._max_inference = 0

    def begin(self, method: str, path: str, headers: dict[str, str]) -> dict[str, Any]:
        """Open a log entry for a request that just arrived."""
        with self._lock:
            entry: dict[str, Any] = {
                "id": self._next_id,
                "method": method,
                "path": path,
                "model": None,
                "stream": None,
                "fault": None,
                "started": time.time(),
                "dispatched": None,
                "first_byte": None,
                "finished": None,
                "status": None,
                "outcome": "active",
                "chunks": 0,
                "headers": headers,
                "body": None,
                "body_size": 0,
            }
            self._next_id += 1
            self._log.append(entry)
            self._active[entry["id"]] = entry
            self._paths[path] += 1
            if path in INFERENCE_PATHS:
                busy = sum(1 for e in self._active.values() if e["path"] in INFERENCE_PATHS)
                self._max_inference = max(self._max_inference, busy)
            return entry

    def end(self, entry: dict[str, Any], outcome: str) -> None:
        """Close a log entry: completed, cancelled (client left), dropped, error or rejected."""
        with self._lock:
            entry["outcome"] = outcome
            entry["finished"] = time.time()
            if self._active.pop(entry["id"], None) is not None:
                self._outcomes[outcome] += 1

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy of the record (what ``GET /_sim/stats`` returns)."""
        with self._lock:
            active = list(self._active.values())
            return {
                "total": self._next_id - 1,
                "requests": dict(self._paths),
                "outcomes": dict(self._outcomes),
                "active": len(active),
                "active_inference": sum(1 for e in active if e["path"] in INFERENCE_PATHS),
                "max_active_inference": self._max_inference,
                "running": self.gate.running,
                "waiting": self.gate.waiting,
                "vram": self.vram.stats(),
                "log": [dict(entry) for entry in self._log],
            }
