"""The VRAM model: runners loaded with their Runner options, reloads, keep-alive, LRU eviction.

As Ollama's scheduler does (``server/sched.go``):

- a loaded model is a runner that keeps the ``api.Runner`` options it was loaded with
  (``num_ctx``, ``num_batch``, ``num_gpu``, ``main_gpu``, ``use_mmap``, ``num_thread``,
  ``draft_num_predict``; ``api/types.go`` ``Runner``). A request whose options differ reloads
  it (``needsReload``): it waits until the runner is idle, the runner goes, and the model
  loads again, costing ``load_time``. A request without ``num_ctx`` gets the automatic one
  (``default_num_ctx``, Ollama's VRAM tier; ``usesAutomaticNumCtx`` in ``server/routes.go``),
  and two automatic ones never differ;
- a request's ``keep_alive`` becomes the runner's session (``useLoadedRunner``); one without
  it leaves the session as it was (five minutes at load). The expiry starts when the runner
  goes idle (``processCompleted``): a session of ``0`` unloads it once its last request ends;
- requests for a model being loaded wait for that load; at ``max_loaded`` the least
  recently used model goes. Cloud models run remotely and never take VRAM.

Each runner keeps a prefix cache with one entry per parallel slot (:mod:`simulator.prefix_cache`).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from common.durations import DurationError, parse_keep_alive
from simulator.prefix_cache import PrefixCache
from simulator.text import is_cloud_model, normalize_model

if TYPE_CHECKING:
    from simulator.exchange import Exchange

DEFAULT_KEEP_ALIVE = 300.0  # Ollama's OLLAMA_KEEP_ALIVE default: five minutes
FOREVER = 10 * 365 * 86_400.0
# api.Runner's keys and api.DefaultOptions' values for them; num_ctx's comes from the config.
RUNNER_DEFAULTS: dict[str, Any] = {
    "num_ctx": None,
    "num_batch": 512,
    "num_gpu": -1,
    "main_gpu": None,
    "use_mmap": None,
    "num_thread": 0,
    "draft_num_predict": 0,
}


def keep_alive_seconds(value: Any) -> float:
    """A request's ``keep_alive`` (seconds or a Go duration such as ``10m``) in seconds; negative: forever."""
    try:
        seconds = parse_keep_alive(value)
    except DurationError:
        return DEFAULT_KEEP_ALIVE
    return min(seconds, FOREVER)


def session_of(value: Any) -> float | None:
    """The session a request asks for; None when it sends no ``keep_alive`` (the runner's stays)."""
    return None if value is None else keep_alive_seconds(value)


@dataclass(frozen=True)
class Wanted:
    """The Runner options a request would load a model with, and which of them Ollama chose."""

    options: tuple[tuple[str, Any], ...]
    auto_ctx: bool
    auto_batch: bool


def wanted_options(options: Any, default_num_ctx: int) -> Wanted:
    """``options`` over Ollama's defaults, as ``modelOptions`` and ``getRunner`` build them."""
    sent = options if isinstance(options, dict) else {}
    values = dict(RUNNER_DEFAULTS, num_ctx=default_num_ctx)
    for key in RUNNER_DEFAULTS:
        value = sent.get(key)
        if value is None:
            continue  # Options.FromMap skips a null
        if isinstance(value, float) and value.is_integer() and key not in ("use_mmap",):
            value = int(value)
        values[key] = value
    if isinstance(values["num_ctx"], int) and values["num_ctx"] < 4:
        values["num_ctx"] = 4
    return Wanted(tuple(values.items()), "num_ctx" not in sent, "num_batch" not in sent)


def needs_reload(runner: Runner, wanted: Wanted) -> bool:
    """``runnerRef.needsReload``: whether the request's Runner options differ from the runner's."""
    existing = dict(runner.wanted.options)
    new = dict(wanted.options)
    if runner.wanted.auto_ctx and wanted.auto_ctx:
        new["num_ctx"] = existing["num_ctx"]
    if runner.wanted.auto_batch and wanted.auto_batch:
        new["num_batch"] = existing["num_batch"]
    if isinstance(new["num_gpu"], int) and new["num_gpu"] < 0:
        existing["num_gpu"] = new["num_gpu"] = -1
    return existing != new


@dataclass(eq=False)
class Runner:
    """A loaded model: its options, session, users and prefix cache."""

    wanted: Wanted
    session: float
    cache: PrefixCache
    refs: int = 0
    expires: int = 0  # time.time_ns when idle; ignored while in use
    draining: bool = False  # a request with other options waits for it to go idle
    idle: asyncio.Future[None] | None = field(default=None, repr=False)

    @property
    def num_ctx(self) -> Any:
        """The context length it runs with."""
        return dict(self.wanted.options)["num_ctx"]


class Vram:
    """Which models are loaded (least recently used first), which are loading, and the counters."""

    def __init__(self) -> None:
        self.loaded: OrderedDict[str, Runner] = OrderedDict()
        self.loading: dict[str, asyncio.Future[None]] = {}
        self.loading_keep_alive: dict[str, float] = {}  # model being loaded -> its keep-alive (s)
        self.loads = 0
        self.reloads = 0  # loads caused by other Runner options (a subset of ``loads``)
        self.evictions = 0

    def purge(self) -> None:
        """Forget the idle models whose keep-alive ran out."""
        now = time.time_ns()
        for name in [n for n, r in self.loaded.items() if r.refs <= 0 and r.expires <= now]:
            del self.loaded[name]

    def unload(self, name: str) -> None:
        """Drop a model from memory (``keep_alive: 0`` on a load-only request, or the model was deleted)."""
        self.loaded.pop(normalize_model(name), None)

    def make_room(self, max_loaded: int) -> None:
        """Evict least recently used models until one more fits (0: no limit)."""
        while max_loaded and self.loaded and len(self.loaded) + len(self.loading) > max_loaded:
            self.loaded.popitem(last=False)
            self.evictions += 1

    def listed(self) -> list[tuple[str, int, Any]]:
        """What /api/ps lists: (model, expiry in time.time_ns, num_ctx) of loaded and loading models.

        Ollama's scheduler puts a runner in its ``loaded`` map before the load finishes, and
        PsHandler lists every entry; one still loading or in use shows now plus its session
        (server/sched.go ``load``, server/routes.go ``PsHandler``).
        """
        self.purge()
        now = time.time_ns()
        rows = []
        for name, runner in self.loaded.items():
            expires = runner.expires if runner.refs <= 0 else now + int(runner.session * 1e9)
            rows.append((name, expires, runner.num_ctx))
        for name, seconds in self.loading_keep_alive.items():
            rows.append((name, now + int(seconds * 1e9), None))
        return rows

    def release(self, name: str, runner: Runner) -> None:
        """A request on ``runner`` ended: at no users, its session starts (0: it unloads now)."""
        runner.refs -= 1
        if runner.refs > 0:
            return
        if runner.session <= 0 and self.loaded.get(name) is runner:
            del self.loaded[name]
        runner.expires = time.time_ns() + int(runner.session * 1e9)
        if runner.idle is not None and not runner.idle.done():
            runner.idle.set_result(None)

    def stats(self) -> dict[str, Any]:
        """What ``/_sim/stats`` reports under ``vram``."""
        self.purge()
        return {
            "loads": self.loads,
            "reloads": self.reloads,
            "evictions": self.evictions,
            "loaded": list(self.loaded),
            "loading": list(self.loading),
        }


@asynccontextmanager
async def use(
    ex: Exchange, model: str, keep_alive: Any = None, options: Any = None
) -> AsyncIterator[Runner | None]:
    """Hold the model's runner for one request, loading (or reloading) it first; None for a cloud model.

    ``ex.load_ns`` is set to the nanoseconds this took: Ollama's ``load_duration``.
    """
    started = time.monotonic_ns()
    if is_cloud_model(model):
        ex.load_ns = 0
        yield None
        return
    vram: Vram = ex.state.vram
    name = normalize_model(model)
    wanted = wanted_options(options, ex.config.default_num_ctx)
    session = session_of(keep_alive)
    runner = await _runner_for(ex, vram, name, wanted, session)
    ex.load_ns = time.monotonic_ns() - started
    try:
        yield runner
    finally:
        vram.release(name, runner)


async def _runner_for(ex: Exchange, vram: Vram, name: str, wanted: Wanted, session: float | None) -> Runner:
    while True:
        vram.purge()
        runner = vram.loaded.get(name)
        if runner is not None and not runner.draining and not needs_reload(runner, wanted):
            runner.refs += 1
            if session is not None:
                runner.session = session
            vram.loaded.move_to_end(name)
            return runner
        pending = vram.loading.get(name)
        if pending is not None:
            await ex.wait(asyncio.shield(pending))
            continue  # loaded now, unless its loader's client left before it finished
        if runner is not None:
            runner.draining = True  # other options: it goes once idle (needsReload, then unload)
            if runner.refs > 0:
                if runner.idle is None or runner.idle.done():
                    runner.idle = asyncio.get_running_loop().create_future()
                await ex.wait(asyncio.shield(runner.idle))
                continue
            if vram.loaded.get(name) is runner:
                del vram.loaded[name]
            vram.reloads += 1
        return await _load(ex, vram, name, wanted, DEFAULT_KEEP_ALIVE if session is None else session)


async def _load(ex: Exchange, vram: Vram, name: str, wanted: Wanted, session: float) -> Runner:
    """Load ``name`` with ``wanted``; the new runner comes back held by this request."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    vram.loading[name] = done
    vram.loading_keep_alive[name] = session
    try:
        vram.make_room(ex.config.max_loaded)  # this model already counts, in `loading`
        await ex.pause(ex.config.load_time)
        vram.loads += 1
        runner = Runner(wanted, session, PrefixCache(ex.config.num_parallel), refs=1)
        vram.loaded[name] = runner
        vram.loaded.move_to_end(name)
        return runner
    finally:
        del vram.loading[name]
        del vram.loading_keep_alive[name]
        done.set_result(None)
