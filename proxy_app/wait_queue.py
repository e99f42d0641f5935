"""The waiting tickets of the in-process scheduler, indexed so every rule is O(log n).

docs/contract.md §5, §7 and §8. A waiting ticket's key ``(score, seq)`` is fixed at
enqueue (``score = base + fair-share points + rate x enqueue_minutes``), so the order
never needs re-sorting. The indexes:

- ``lane``: per (model group, identity) the identity's waiting tickets for that model;
- ``ready``: per model group, the heads of the lanes whose identity may take another
  slot (below its ``max_concurrent``): the best of them is the next ticket of that
  model, and a blocked identity's tickets are skipped without losing their places;
- ``order``: every waiting key, for positions and for the worst ticket (eviction).

Fair share counts per identity (``who``); limits count per *limit subject*
(:class:`proxy_app.tickets.LimitSubject`, docs/contract.md §16): a shared key's end users are
identities of their own, and the key is the one subject that bounds them all. An identity is
blocked while any of its subjects holds its ``max_concurrent``. A subject that reaches or leaves
its limit moves the lane heads of the identities waiting under it, one per model each waits for.
The empty identity ``""`` never gets fair-share points or limits.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Protocol

from sortedcontainers import SortedList

Key = tuple[float, int]


class Entry(Protocol):
    """What the queue needs to know of a waiting ticket."""

    key: Key
    group: str
    who: str
    subjects: tuple[str, ...]  # the limit subjects that bound it


class WaitQueue:
    """Waiting tickets by model and identity, plus each identity's slot holders."""

    def __init__(self) -> None:
        self._entries: dict[int, Entry] = {}
        self._lanes: dict[tuple[str, str], SortedList] = {}
        self._ready: dict[str, SortedList] = {}
        self._order: SortedList = SortedList()
        self._groups_of: dict[str, Counter[str]] = {}  # identity -> model group -> waiting
        self.waiting = Counter[str]()  # identity -> waiting tickets
        self.active = Counter[str]()  # identity -> slots held
        self.subject_waiting = Counter[str]()  # limit subject -> waiting tickets
        self.subject_active = Counter[str]()  # limit subject -> slots held
        self._limits: dict[str, int] = {}  # limit subject -> max_concurrent (the latest ticket's)
        self._subjects_of: dict[str, tuple[str, ...]] = {}  # waiting identity -> its subjects
        self._members: dict[str, Counter[str]] = {}  # limit subject -> identities waiting under it

    def __len__(self) -> int:
        return len(self._entries)

    def blocked(self, who: str) -> bool:
        """True if a limit subject of the waiting identity ``who`` holds its max_concurrent."""
        return self.blocked_by(self._subjects_of.get(who, ()))

    def blocked_by(self, subjects: Iterable[str]) -> bool:
        """True if any of ``subjects`` holds as many slots as its max_concurrent allows."""
        for subject in subjects:
            limit = self._limits.get(subject)
            if limit is not None and self.subject_active[subject] >= limit:
                return True
        return False

    def set_limits(self, limits: Iterable[tuple[str, int | None]]) -> bool:
        """Each subject's max_concurrent from now on (None: no limit); True if that unblocked anyone."""
        limits = [(subject, limit) for subject, limit in limits if subject]
        affected = self._under(subject for subject, _ in limits)
        before = {who: self.blocked(who) for who in affected}
        for subject, limit in limits:
            if limit is None:
                self._limits.pop(subject, None)
            else:
                self._limits[subject] = limit
        for who in affected:
            self._toggle(who, before[who])
        return any(was and not self.blocked(who) for who, was in before.items())

    def holding(self, who: str, subjects: tuple[str, ...], delta: int) -> None:
        """``who`` (bound by ``subjects``) took (+1) or gave back (-1) a slot."""
        if who:  # no identity: no fair share, nothing to count
            self.active[who] += delta
            if self.active[who] <= 0:
                del self.active[who]
        affected = self._under(subjects)
        before = {other: self.blocked(other) for other in affected}
        for subject in subjects:
            self.subject_active[subject] += delta
            if self.subject_active[subject] <= 0:
                del self.subject_active[subject]
        for other in affected:
            self._toggle(other, before[other])

    def add(self, entry: Entry) -> None:
        """Queue a ticket."""
        self._entries[entry.key[1]] = entry
        self._order.add(entry.key)
        self.waiting[entry.who] += 1
        if entry.who:  # only an identity can be blocked, so only its groups are looked up
            self._groups_of.setdefault(entry.who, Counter())[entry.group] += 1
            self._subjects_of[entry.who] = entry.subjects
        for subject in entry.subjects:
            self.subject_waiting[subject] += 1
            self._members.setdefault(subject, Counter())[entry.who] += 1
        lane = self._lanes.setdefault((entry.group, entry.who), SortedList())
        old_head = lane[0] if lane else None
        lane.add(entry.key)
        if not self.blocked(entry.who) and (old_head is None or entry.key < old_head):
            ready = self._ready.setdefault(entry.group, SortedList())
            if old_head is not None:
                ready.remove(old_head)
            ready.add(entry.key)

    def remove(self, entry: Entry) -> None:
        """Take a ticket out (granted, cancelled, evicted, timed out or gone)."""
        blocked = self.blocked(entry.who)  # before its subjects may be forgotten below
        del self._entries[entry.key[1]]
        self._order.remove(entry.key)
        self.waiting[entry.who] -= 1
        if self.waiting[entry.who] <= 0:
            del self.waiting[entry.who]
        for subject in entry.subjects:
            self.subject_waiting[subject] -= 1
            if self.subject_waiting[subject] <= 0:
                del self.subject_waiting[subject]
            members = self._members[subject]
            members[entry.who] -= 1
            if members[entry.who] <= 0:
                del members[entry.who]
                if not members:
                    del self._members[subject]
        if entry.who:
            groups = self._groups_of[entry.who]
            groups[entry.group] -= 1
            if groups[entry.group] <= 0:
                del groups[entry.group]
                if not groups:
                    del self._groups_of[entry.who]
                    self._subjects_of.pop(entry.who, None)
        lane_id = (entry.group, entry.who)
        lane = self._lanes[lane_id]
        was_head = lane[0] == entry.key
        lane.remove(entry.key)
        if was_head and not blocked:
            ready = self._ready[entry.group]
            ready.remove(entry.key)
            if lane:
                ready.add(lane[0])
            elif not ready:
                del self._ready[entry.group]
        if not lane:
            del self._lanes[lane_id]

    def heads(self) -> list[Entry]:
        """The next eligible ticket of each model group, best first."""
        return [self._entries[key[1]] for key in sorted(ready[0] for ready in self._ready.values())]

    def head_of(self, group: str) -> Entry | None:
        """The next eligible ticket of one model group."""
        ready = self._ready.get(group)
        return self._entries[ready[0][1]] if ready else None

    def groups(self) -> list[str]:
        """The model groups with an eligible ticket."""
        return list(self._ready)

    def worst(self) -> Entry | None:
        """The ticket that would go last: the newest among the lowest effective priority."""
        return self._entries[self._order[-1][1]] if self._order else None

    def rank(self, entry: Entry) -> int:
        """0-based place of a waiting ticket in the order of every waiting ticket."""
        return self._order.bisect_left(entry.key)

    def in_order(self) -> list[Entry]:
        """Every waiting ticket, first to go first."""
        return [self._entries[key[1]] for key in self._order]

    def _under(self, subjects: Iterable[str]) -> set[str]:
        """The waiting identities bound by any of ``subjects``."""
        return {who for subject in subjects for who in self._members.get(subject, ())}

    def _toggle(self, who: str, was_blocked: bool) -> None:
        """Take the identity's lane heads out of ``ready`` when it becomes blocked, back when not."""
        now_blocked = self.blocked(who)
        if now_blocked == was_blocked:
            return
        for group in self._groups_of.get(who, ()):
            head = self._lanes[(group, who)][0]
            if now_blocked:
                ready = self._ready[group]
                ready.remove(head)
                if not ready:
                    del self._ready[group]
            else:
                self._ready.setdefault(group, SortedList()).add(head)
