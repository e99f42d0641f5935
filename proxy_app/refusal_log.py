"""Refusals without an identity are collapsed per client IP and minute, so a flood cannot grow the log.

A request refused before anyone was identified (401, and a 400/403/404/405
before classification succeeded: ``source`` is None) costs the refuser nothing,
so one client could otherwise add rows without limit. Rule (README "Request
log"): per client IP, status and minute, the first such refusal is written at
once as usual; the later ones are only counted, and when the minute is over
one more row stands for them all (``repeats`` = how many, the last one's
request id, time, endpoint, error and key prefix). At most two rows per IP
and status a minute, and the repeats add up to the exact number of refusals.

Memory is bounded: at most ``max_ips`` distinct IPs are tracked per minute;
refusals from further IPs are counted together under one row whose
``client_ip`` is empty. Identified requests always get their own row, and
``/metrics`` still counts every refusal (``Gateway.finish`` observes each one).
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


def is_anonymous_refusal(rec: RequestRecord) -> bool:
    """A 4xx answer to a request nobody was identified for (a client that left is not a refusal)."""
    return rec.source is None and 400 <= rec.status < 500 and rec.status != 499


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
        self._tallies: dict[tuple[str | None, int], _Tally] = {}
        self._ips: set[str | None] = set()

    def record(self, rec: RequestRecord) -> None:
        """Write ``rec`` now, or count it towards its IP's row of this minute."""
        if not is_anonymous_refusal(rec):
            self.sink.record(rec)
            return
        self.roll()
        ip = rec.client_ip
        if ip not in self._ips:
            if len(self._ips) >= self.max_ips:
                ip = None  # over the cap: counted with every other untracked IP
            self._ips.add(ip)
        key = (ip, rec.status)
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
        for (ip, _status), tally in tallies.items():
            if tally.last is not None:
                self.sink.record(dataclasses.replace(tally.last, client_ip=ip, repeats=tally.more))

    @property
    def tracked_ips(self) -> int:
        """Distinct client IPs counted in the current minute."""
        return len(self._ips)

    def _now_minute(self) -> int:
        return int(self.clock() // self.window)
