"""A loaded model's prompt cache: one KV cache per parallel slot, as llama.cpp's server keeps them.

Prompt evaluation then costs only the tokens past the prefix the chosen slot already holds
(``prompt_eval_rate`` seconds each, in ``simulator/engine.py``).
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"\w+|[^\w\s]")


def tokens_of(text: str) -> tuple[str, ...]:
    """The simulator's tokens of ``text`` (words and punctuation, as ``count_tokens`` counts them)."""
    return tuple(_TOKEN.findall(text))


class PrefixCache:
    """One cached token sequence per parallel slot, chosen as llama.cpp's server chooses a slot.

    ``get_available_slot``: among the idle slots, the one whose cache shares the longest prefix
    with the prompt, if that prefix is more than ``SIMILARITY`` of the prompt
    (``--slot-prompt-similarity``, 0.1 by default); else the least recently used idle slot.
    """

    SIMILARITY = 0.1

    def __init__(self, slots: int) -> None:
        self.entries: list[tuple[str, ...]] = [() for _ in range(max(slots, 1))]
        self.used = [0] * len(self.entries)  # when each slot was last used (a counter)
        self.busy = [False] * len(self.entries)
        self._clock = 0

    def take(self, tokens: tuple[str, ...]) -> tuple[int, int]:
        """(slot, tokens already cached there), the slot now busy; (-1, 0) when every slot is."""
        idle = [i for i, busy in enumerate(self.busy) if not busy]
        if not idle:
            return -1, 0
        best, best_len = -1, 0
        for index in idle:
            shared = _shared_prefix(self.entries[index], tokens)
            if shared > best_len and tokens and shared / len(tokens) > self.SIMILARITY:
                best, best_len = index, shared
        if best < 0:
            best = min(idle, key=lambda i: self.used[i])
        self.busy[best] = True
        return best, best_len

    def done(self, slot: int, tokens: tuple[str, ...] | None) -> None:
        """The request on ``slot`` ended; a finished one leaves ``tokens`` (prompt and answer) cached."""
        if not 0 <= slot < len(self.entries):
            return
        self.busy[slot] = False
        self._clock += 1
        self.used[slot] = self._clock
        if tokens is not None:
            self.entries[slot] = tokens


def _shared_prefix(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    count = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        count += 1
    return count
