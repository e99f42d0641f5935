"""The one way tests wait for something: poll a predicate within a generous, bounded deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

# Generous: the suite runs beside others on a loaded two-core machine; a wait that holds returns early.
DEFAULT_TIMEOUT = 10.0


def wait_until(predicate: Callable[[], Any], timeout: float = DEFAULT_TIMEOUT, interval: float = 0.02) -> Any:
    """Poll ``predicate`` (blocking) until it returns something truthy; that value, or TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition never became true within {timeout:g} s")
        time.sleep(interval)


async def await_until(
    predicate: Callable[[], Any], timeout: float = DEFAULT_TIMEOUT, interval: float = 0.005
) -> Any:
    """:func:`wait_until` for code on the event loop: it keeps running while this polls."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition never became true within {timeout:g} s")
        await asyncio.sleep(interval)
