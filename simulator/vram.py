"""The VRAM model: loading a model costs ``load_time``; at ``max_loaded`` the least recently used one goes.

Like Ollama's scheduler (server/sched.go): a request for a model that is not loaded waits for the load,
requests for a model being loaded wait for that same load, and a loaded model stays until its
keep-alive runs out, it is unloaded (``keep_alive: 0``) or evicted to make room. Cloud models run
remotely and never take VRAM.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from simulator.text import is_cloud_model, normalize_model

if TYPE_CHECKING:
    from simulator.exchange import Exchange

DEFAULT_KEEP_ALIVE = 300.0  # Ollama's OLLAMA_KEEP_ALIVE default: five minutes
FOREVER = 10 * 365 * 86_400.0
_DURATION = re.compile(r"^(-?\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def keep_alive_seconds(value: Any) -> float:
    """A request's ``keep_alive`` (seconds or a Go duration such as ``10m``) in seconds; negative: forever."""
    if isinstance(value, bool) or value is None:
        return DEFAULT_KEEP_ALIVE
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value).strip())
        if match is None:
            return DEFAULT_KEEP_ALIVE
        seconds = float(match.group(1)) * _UNIT[match.group(2)]
    return FOREVER if seconds < 0 else seconds


class Vram:
    """Which models are loaded (least recently used first), which are loading, and the counters."""

    def __init__(self) -> None:
        self.loaded: OrderedDict[str, int] = OrderedDict()  # model -> expiry (time.time_ns)
        self.loading: dict[str, asyncio.Future[None]] = {}
        self.loading_keep_alive: dict[str, float] = {}  # model being loaded -> its keep-alive (s)
        self.loads = 0
        self.evictions = 0

    def purge(self) -> None:
        """Forget the models whose keep-alive ran out."""
        now = time.time_ns()
        for name in [name for name, expires in self.loaded.items() if expires <= now]:
            del self.loaded[name]

    def keep(self, name: str, keep_alive: float) -> None:
        """Mark a loaded model as just used, with a new expiry."""
        self.loaded[name] = time.time_ns() + int(keep_alive * 1e9)
        self.loaded.move_to_end(name)

    def unload(self, name: str) -> None:
        """Drop a model from memory (``keep_alive: 0`` or the model was deleted)."""
        self.loaded.pop(normalize_model(name), None)

    def make_room(self, max_loaded: int) -> None:
        """Evict least recently used models until one more fits (0: no limit)."""
        while max_loaded and self.loaded and len(self.loaded) + len(self.loading) > max_loaded:
            self.loaded.popitem(last=False)
            self.evictions += 1

    def listed(self) -> list[tuple[str, int]]:
        """What /api/ps lists: loaded models and those being loaded, with their expiry (time.time_ns).

        Ollama's scheduler puts a runner in its ``loaded`` map before the load finishes, and
        PsHandler lists every entry; one still loading has no expiry yet and shows now plus its
        keep-alive (server/sched.go ``load``, server/routes.go ``PsHandler``).
        """
        self.purge()
        now = time.time_ns()
        loading = [(name, now + int(seconds * 1e9)) for name, seconds in self.loading_keep_alive.items()]
        return list(self.loaded.items()) + loading

    def stats(self) -> dict[str, Any]:
        """What ``/_sim/stats`` reports under ``vram``."""
        self.purge()
        return {
            "loads": self.loads,
            "evictions": self.evictions,
            "loaded": list(self.loaded),
            "loading": list(self.loading),
        }


async def acquire(ex: Exchange, model: str, keep_alive: Any = None) -> None:
    """Make sure ``model`` is loaded, waiting ``load_time`` (or for a load under way) when it is not."""
    if is_cloud_model(model):
        return
    vram: Vram = ex.state.vram
    name = normalize_model(model)
    seconds = keep_alive_seconds(keep_alive)
    while True:
        vram.purge()
        if name in vram.loaded:
            vram.keep(name, seconds)
            return
        pending = vram.loading.get(name)
        if pending is not None:
            await ex.wait(asyncio.shield(pending))
            continue  # loaded now, unless its loader's client left before it finished
        await _load(ex, vram, name, seconds)
        return


async def _load(ex: Exchange, vram: Vram, name: str, keep_alive: float) -> None:
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    vram.loading[name] = done
    vram.loading_keep_alive[name] = keep_alive
    try:
        vram.make_room(ex.config.max_loaded)  # this model already counts, in `loading`
        await ex.pause(ex.config.load_time)
        vram.loads += 1
        vram.keep(name, keep_alive)
    finally:
        del vram.loading[name]
        del vram.loading_keep_alive[name]
        done.set_result(None)
