"""JSON with a nesting limit: deeper documents are bad requests, not crashes.

``json.loads`` recurses in C and raises ``RecursionError`` (not
``ValueError``) near 1,000 levels, which frameworks turn into a 500; and
documents a little less deep still make every later walker over them
recurse. Nothing a client of this gateway sends needs more than a few levels.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_JSON_DEPTH = 64
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


class JSONTooDeep(ValueError):
    """The document nests arrays and objects deeper than the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"JSON nested deeper than {limit} levels")
        self.limit = limit


def nesting_exceeds(document: bytes | str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether a well-formed JSON ``document`` nests deeper than ``limit`` (C-speed passes only)."""
    raw = document.encode() if isinstance(document, str) else document
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False  # the common case: too few brackets to be that deep
    # Strings may hold brackets: drop them, then everything but brackets;
    # each pass of removing empty pairs peels one level off every branch.
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    for _ in range(limit):
        brackets = brackets.replace(b"{}", b"").replace(b"[]", b"")
        if not brackets:
            return False
    return True


def loads_limited(document: bytes | str, limit: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` that raises :class:`JSONTooDeep` (a ``ValueError``) past ``limit`` levels."""
    try:
        data = json.loads(document)
    except RecursionError:
        raise JSONTooDeep(limit) from None
    if nesting_exceeds(document, limit):
        raise JSONTooDeep(limit)
    return data
