"""The scheduler's reference model and its Hypothesis strategies (the local and Redis model tests)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

from hypothesis import strategies as st

SOURCES = {0: "direct_api", 1: "direct_api", 2: "custom_app", 3: "web_chat", 5: "custom_app"}


IDENTITIES = ["", "key:1", "key:2", "ip:3", "key:1/end-user:a", "key:1/end-user:b"]


SUBJECTS = ["key:1", "key:2", "ip:3"]


def subject_of(who: str) -> str:
    """Whose limits bind ``who``: the key an end user stands behind, else the identity itself."""
    return who.split("/", 1)[0]


MODELS = ["a", "b", "c"]


KINDS = ["enqueue"] * 8 + [
    "leave_then_release",
    "release",
    "release",
    "release_again",
    "leave",
    "revoke",
    "release_then_leave",
    "advance",
]


def as_step(kind: int, base: int, who: str, model: str, arg: int) -> tuple:
    """One step: an enqueue half the time (so queues build up), else a release, leave, ..."""
    name = KINDS[kind]
    return (name, base, who, model) if name == "enqueue" else (name, arg)


step = st.builds(
    as_step,
    st.integers(0, len(KINDS) - 1),
    st.sampled_from(sorted(SOURCES)),
    st.sampled_from(IDENTITIES),
    st.sampled_from(MODELS),
    st.integers(1, 16),
)


limits = st.fixed_dictionaries(
    {who: st.tuples(st.sampled_from([None, 0, 1, 2]), st.sampled_from([None, 1, 2])) for who in SUBJECTS}
)


configs = st.fixed_dictionaries(
    {
        "slots": st.integers(1, 2),
        "rate": st.sampled_from([Fraction(0), Fraction(1, 4), Fraction(1), Fraction(2)]),
        "max_queue": st.sampled_from([0, 3, 6, 1000]),
        "fair": st.sampled_from([Fraction(0), Fraction(1, 2), Fraction(1)]),
        "fair_seconds": st.sampled_from([Fraction(0), Fraction(15), Fraction(30)]),
        "fair_window": st.sampled_from([Fraction(60), Fraction(300)]),
        "affinity": st.sampled_from([Fraction(0), Fraction(1, 2), Fraction(2)]),
        "max_delay": st.sampled_from([15, 45, 600]),
        # docs/contract.md §12: each model's max_parallel (its profile's), carried by its tickets.
        "caps": st.fixed_dictionaries({m: st.sampled_from([None, None, 1, 2]) for m in MODELS}),
    }
)


def overrides_for(config: dict) -> dict:
    """The scheduler settings of a drawn configuration."""
    return {
        "aging_per_minute": float(config["rate"]),
        "max_queue": config["max_queue"],
        "fair_share": float(config["fair"]),
        "fair_share_seconds": float(config["fair_seconds"]),
        "fair_share_window": float(config["fair_window"]),
        "model_affinity": float(config["affinity"]),
        "affinity_max_delay": float(config["max_delay"]),
    }


@dataclass
class Waiting:
    score: Fraction
    seq: int
    rid: str
    who: str
    model: str | None
    passed_at: Fraction | None = None


@dataclass
class Reference:
    """The contract, written the slow obvious way (one backend, every model served)."""

    slots: int
    rate: Fraction
    max_queue: int
    fair: Fraction = Fraction(0)
    affinity: Fraction = Fraction(0)
    max_delay: Fraction = Fraction(0)
    fair_seconds: Fraction = Fraction(0)
    fair_window: Fraction = Fraction(300)
    now: Fraction = Fraction(0)
    waiting: list[Waiting] = field(default_factory=list)  # kept sorted
    held: list[str] = field(default_factory=list)
    owner: dict[str, str] = field(default_factory=dict)  # rid -> identity
    limits: dict[str, int | None] = field(default_factory=dict)  # limit subject -> max_concurrent
    started: dict[str, Fraction] = field(default_factory=dict)  # rid holding a slot -> since when
    slot_time: list[tuple[str, Fraction, Fraction]] = field(default_factory=list)  # (who, start, end)
    caps: dict[str, int | None] = field(default_factory=dict)  # model -> max_parallel
    model_of: dict[str, str | None] = field(default_factory=dict)  # rid -> model
    granted: list[str] = field(default_factory=list)  # grant order of tickets that got to use it
    released: list[str] = field(default_factory=list)
    evicted: list[str] = field(default_factory=list)
    last_model: str | None = None
    seq: int = 0

    @classmethod
    def of(cls, config: dict) -> Reference:
        """The reference for a drawn configuration."""
        keys = ("slots", "rate", "max_queue", "fair", "affinity", "max_delay", "fair_seconds", "fair_window")
        return cls(*(config[k] for k in keys))

    def active(self, who: str) -> int:
        return sum(self.owner[rid] == who for rid in self.held)

    def blocked(self, who: str) -> bool:
        subject = subject_of(who)
        limit = self.limits.get(subject)
        held = sum(subject_of(self.owner[rid]) == subject for rid in self.held)
        return bool(who) and limit is not None and held >= limit

    def gpu_used(self, who: str) -> Fraction:
        """Slot time of ``who`` within the window, the obvious way: every interval, clipped."""
        low = self.now - self.fair_window
        spans = [(start, end) for owner, start, end in self.slot_time if owner == who]
        spans += [(self.started[rid], self.now) for rid in self.held if self.owner[rid] == who]
        return sum((max(Fraction(0), end - max(start, low)) for start, end in spans), Fraction(0))

    def capped(self, model: str | None) -> bool:
        cap = self.caps.get(model) if model else None
        return cap is not None and sum(self.model_of[rid] == model for rid in self.held) >= cap

    def enqueue(
        self,
        rid: str,
        base: int,
        who: str = "",
        model: str | None = None,
        max_queued=None,
        max_concurrent=None,
        max_parallel=None,
    ) -> str:
        """'granted', 'identity_full', 'full', 'queued' or 'evicted' (and self.evicted grows)."""
        self.owner[rid] = who
        self.model_of[rid] = model
        if who:
            self.limits[subject_of(who)] = max_concurrent
        if model:
            self.caps[model] = max_parallel
        self.dispatch()  # a raised limit or cap lets waiting tickets go first
        mine = sum(w.who == who for w in self.waiting)
        steps = mine + self.active(who)
        if self.fair_seconds > 0:
            steps += math.floor(self.gpu_used(who) / self.fair_seconds)
        points = self.fair * steps if who else 0
        if not self.blocked(who) and not self.capped(model) and len(self.held) < self.slots:
            self._grant(rid, model)
            return "granted"
        queued = sum(bool(w.who) and subject_of(w.who) == subject_of(who) for w in self.waiting)
        if who and max_queued is not None and queued >= max_queued:
            return "identity_full"
        score = base + points + self.rate * self.now / 60
        outcome = "queued"
        if len(self.waiting) >= self.max_queue:
            if not self.waiting or score >= self.waiting[-1].score:
                return "full"
            self.evicted.append(self.waiting.pop().rid)
            outcome = "evicted"
        self.seq += 1
        self.waiting.append(Waiting(score, self.seq, rid, who, model))
        self.waiting.sort(key=lambda w: (w.score, w.seq))
        return outcome

    def _grant(self, rid: str, model: str | None) -> None:
        self.held.append(rid)
        self.started[rid] = self.now
        self.granted.append(rid)
        self.last_model = model or self.last_model

    def dispatch(self) -> list[str]:
        """Fill free slots: the best eligible ticket, or one for the loaded model within the slack."""
        out = []
        while len(self.held) < self.slots:
            eligible = [w for w in self.waiting if not self.blocked(w.who) and not self.capped(w.model)]
            if not eligible:
                break
            chosen = nxt = eligible[0]
            overdue = nxt.passed_at is not None and self.now - nxt.passed_at >= self.max_delay
            if self.affinity > 0 and self.max_delay > 0 and nxt.model != self.last_model and not overdue:
                alts = [
                    w for w in eligible if w.model == self.last_model and w.score <= nxt.score + self.affinity
                ]
                if alts:
                    chosen = alts[0]
                    if nxt.passed_at is None:
                        nxt.passed_at = self.now
            self.waiting.remove(chosen)
            self._grant(chosen.rid, chosen.model)
            out.append(chosen.rid)
        return out

    def release(self, rid: str) -> list[str]:
        """Free ``rid``'s slot; returns the tickets granted in consequence, in order."""
        self.held.remove(rid)
        self.slot_time.append((self.owner[rid], self.started.pop(rid), self.now))
        return self.dispatch()

    def remove(self, rid: str) -> None:
        """A waiting ticket leaves."""
        self.waiting = [w for w in self.waiting if w.rid != rid]
