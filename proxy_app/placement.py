"""Where a request may run, beyond free slots: per-model caps and conversation homes (docs/contract.md §12).

Both schedulers apply these rules (the Redis one in ``scheduler_redis.lua``, step for step):

- **max_parallel.** A model's profile may cap the requests for it that hold slots at once, over
  every backend. A capped model's tickets wait, in their order, while other models' go past.
  The cap is the one the model's latest ticket carried (profiles change at run time).
- **Conversations stay where their cache is.** With two or more backends serving the model, a
  turn goes to the backend that served its conversation's previous turn (its *home*) while
  that backend is healthy and has the model. Home busy and another backend free: the turn
  waits for home at most ``STICKY_MAX_DELAY`` seconds, counted from the first time another
  backend could have taken it; then it goes wherever a slot is free. ``0`` turns it off.
"""

from __future__ import annotations

from collections import Counter, OrderedDict

from proxy_app.backends import BackendPool, BackendState

# Conversations whose home is remembered (least recently served forgotten first): far more
# than run at once, a few hundred kilobytes at most.
HOMES_KEPT = 10_000


class ModelCaps:
    """Each model group's max_parallel and how many of its requests hold slots now."""

    def __init__(self) -> None:
        self.caps: dict[str, int] = {}
        self.active = Counter[str]()

    def set(self, group: str, cap: int | None) -> bool:
        """The group's cap from now on (None: none); True if that let waiting tickets go."""
        before = self.full(group)
        if cap is None:
            self.caps.pop(group, None)
        else:
            self.caps[group] = cap
        return before and not self.full(group)

    def full(self, group: str) -> bool:
        """True if the group holds as many slots as its cap allows."""
        cap = self.caps.get(group)
        return cap is not None and self.active[group] >= cap

    def holding(self, group: str, delta: int) -> None:
        """A request of the group took (+1) or gave back (-1) a slot."""
        self.active[group] += delta
        if self.active[group] <= 0:
            del self.active[group]


class Homes:
    """The backend that served each conversation last (a bounded LRU map)."""

    def __init__(self, kept: int = HOMES_KEPT) -> None:
        self.kept = kept
        self._urls: OrderedDict[str, str] = OrderedDict()

    def remember(self, conversation: str | None, url: str) -> None:
        """``conversation`` was just served on ``url``."""
        if not conversation:
            return
        self._urls[conversation] = url
        self._urls.move_to_end(conversation)
        while len(self._urls) > self.kept:
            self._urls.popitem(last=False)

    def home(self, pool: BackendPool, model: str | None, conversation: str | None) -> BackendState | None:
        """The conversation's home, if it still serves the model and another backend does too."""
        if not conversation:
            return None
        url = self._urls.get(conversation)
        if url is None:
            return None
        candidates = pool.candidates(model)
        if len(candidates) < 2:
            return None
        return next((b for b in candidates if b.url == url), None)


def placed(
    pool: BackendPool,
    model: str | None,
    home: BackendState | None,
    since: float | None,
    now: float,
    max_delay: float,
) -> tuple[BackendState | None, bool]:
    """(backend to take now or None, whether the ticket is waiting for its home while another is free)."""
    anywhere = pool.pick(model)
    if anywhere is None or home is None or home is anywhere or max_delay <= 0:
        return anywhere, False  # STICKY_MAX_DELAY=0: no conversation has a home
    if home.free > 0:
        return home, False
    if since is not None and now - since >= max_delay:
        return anywhere, False
    return None, True
