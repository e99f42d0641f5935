"""Refusals are collapsed per caller and minute, so a flood cannot grow the log.

A refusal costs the refuser nothing, so one client could otherwise add rows
without limit. Rule (README "Request log"): a 4xx answer (not a 499: a client
that left was not refused) is collapsed per caller, status and minute. The
first such refusal is written at once as usual; the later ones are only
counted, and when the minute is over one more row stands for them all
(``repeats`` = how many, the last one's request id, time, endpoint, error and
key prefix). At most two rows per caller and status a minute, and the repeats
add up to the exact number of refusals.

The caller is the identity when one was found (a key, a whitelist entry or a
user, whatever end user a shared key names: docs/contract.md §16), else the
client IP. Memory is bounded: identities by the accounts that exist, IPs by
``max_ips`` per minute; refusals from further IPs are counted together under
one row whose ``client_ip`` is empty. ``/metrics`` still counts every refusal
(``Gateway.finish`` observes each one).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Protocol

from proxy_app.request_log import RequestRecord

WINDOW = 60.0  # seconds: refusals are collapsed per calendar minute


class RowSink(Protocol):
    """Where rows go: the request-log writer."""

    def record(self, rec: RequestRecord) -> None: ...


@dataclasses.dataclass(slots=True)
class _Tally:
    more: int = 0  # refusals after the first one, not written yet
    last: RequestRecord | None = None


def is_refusal(rec: RequestRecord) -> bool:
    """A 4xx answer (a client that left is not a refusal)."""
    return 400 <= rec.status < 500 and rec.status != 499


def _identity(rec: RequestRecord) -> tuple:
    # The end user behind a shared key is left out: rotating its header must not make rows.
    return (rec.source, rec.api_key_id, rec.whitelist_entry_id, rec.user_id)


class RefusalLog:
    """Passes rows on to the writer, collapsing anonymous refusals per (IP, status, minute)."""

    def __init__(
        self,
        sink: RowSink,
        *,
        max_ips: int,
        window: float = WINDOW,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sink = sink
        self.max_ips = max_ips
        self.window = window
        self.clock = clock
        self._minute = self._now_minute()
        self._tallies: dict[tuple, _Tally] = {}
        self._ips: set[str | None] = set()

    def record(self, rec: RequestRecord) -> None:
        """Write ``rec`` now, or count it towards its caller's row of this minute."""
        if not is_refusal(rec):
            self.sink.record(rec)
            return
        self.roll()
        if rec.source is not None:
            key = ("who", _identity(rec), rec.status)
            if key not in self._tallies:
                self._tallies[key] = _Tally()
                self.sink.record(rec)
                return
            self._tallies[key].more += 1
            self._tallies[key].last = rec
            return
        ip = rec.client_ip
        if ip not in self._ips:
            if len(self._ips) >= self.max_ips:
                ip = None  # over the cap: counted with every other untracked IP
            self._ips.add(ip)
        key = ("ip", ip, rec.status)
        tally = self._tallies.get(key)
        if tally is None and ip is not None:
            self._tallies[key] = _Tally()
            self.sink.record(rec)
            return
        if tally is None:
            tally = self._tallies[key] = _Tally()
        tally.more += 1
        tally.last = rec

    def roll(self) -> None:
        """Write the counted rows of a minute that is over (called every second, and on each refusal)."""
        minute = self._now_minute()
        if minute != self._minute:
            self.flush()
            self._minute = minute

    def flush(self) -> None:
        """Write one row for each IP and status with uncounted refusals, and start afresh."""
        tallies, self._tallies, self._ips = self._tallies, {}, set()
        for (kind, caller, _status), tally in tallies.items():
            if tally.last is None:
                continue
            if kind == "ip":  # the untracked IPs' row has no client IP
                self.sink.record(dataclasses.replace(tally.last, client_ip=caller, repeats=tally.more))
            else:
                self.sink.record(dataclasses.replace(tally.last, repeats=tally.more))

    @property
    def tracked_ips(self) -> int:
        """Distinct client IPs counted in the current minute."""
        return len(self._ips)

    def _now_minute(self) -> int:
        return int(self.clock() // self.window)
