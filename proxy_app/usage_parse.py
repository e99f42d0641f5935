"""Token counts from what Ollama and its OpenAI-compatible surface send back.

Called once per response, on its end only — never per chunk:

- :func:`ollama_usage` reads ``prompt_eval_count`` / ``eval_count`` from a native
  final line (``"done": true``), a ``stream: false`` body, or an ``/api/embed``
  body (which has ``prompt_eval_count`` only).
- :func:`openai_usage` reads ``usage.prompt_tokens`` / ``usage.completion_tokens``
  from a ``/v1`` body or from the SSE usage event (``data: {...}``, sent when the
  client asked for ``stream_options: {"include_usage": true}``).
- :func:`anthropic_usage` reads ``usage.input_tokens`` / ``usage.output_tokens``
  from a ``/v1/messages`` body or SSE event (``message_start`` nests it in
  ``message``; ``message_delta`` carries the final output count), and
  :func:`responses_usage` the same fields from a ``/v1/responses`` body or its
  ``response.completed`` event (nested in ``response``).
- :class:`UsageTracker` is what the relay uses: ``feed()`` every chunk it passes
  on (O(chunk) work, bounded memory, lines split across chunks handled), then
  ``usage()`` once the response ended. It keeps only the last complete line or
  data event, and the tail of a line too long to keep whole. It also counts the
  generated pieces that went by (:data:`PIECE_MARKERS`): a stream that ends
  without its final usage — the client left, the stream broke, or an OpenAI
  stream without ``include_usage`` — is charged what it was sent
  (docs/contract.md §16 "Tokens are charged as delivered").

Every function returns ``(prompt_tokens, completion_tokens)``, each ``None``
when the response did not say (an error line, a cut stream, legacy
``/api/embeddings``).
"""

from __future__ import annotations

import json
import re

from proxy_app.dialects import UsageKind

Usage = tuple[int | None, int | None]

# A line longer than this is not parsed whole: its tail is searched instead.
# Final lines are a few hundred bytes; only big stream:false or embedding
# bodies come near it, and they carry their counts at the very end.
MAX_LINE_BYTES = 256 * 1024
TAIL_BYTES = 8 * 1024

_NONE: Usage = (None, None)


def _count_pattern(key: str) -> re.Pattern[bytes]:
    # In valid JSON a quote preceded by a backslash is inside a string, so a
    # real key never follows one: text that merely mentions the key is skipped.
    return re.compile(rb'(?<=[^\\])"' + key.encode() + rb'"\s*:\s*(\d+)')


_OLLAMA_PROMPT = _count_pattern("prompt_eval_count")
_OLLAMA_COMPLETION = _count_pattern("eval_count")
_OPENAI_PROMPT = _count_pattern("prompt_tokens")
_OPENAI_COMPLETION = _count_pattern("completion_tokens")
_LOAD = _count_pattern("load_duration")
_INPUT = _count_pattern("input_tokens")
_OUTPUT = _count_pattern("output_tokens")


def _count(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _last_match(pattern: re.Pattern[bytes], data: bytes) -> int | None:
    matches = pattern.findall(data)
    return int(matches[-1]) if matches else None


def _loads(data: bytes) -> object | None:
    try:
        return json.loads(data)
    except ValueError:
        return None


def _strip_data_prefix(data: bytes) -> bytes:
    data = data.strip()
    if data.startswith(b"data:"):
        data = data[5:].strip()
    return data


def ollama_usage(last_line: bytes) -> Usage:
    """``(prompt_eval_count, eval_count)`` from Ollama's final line or whole body."""
    data = last_line.strip()
    if not data:
        return _NONE
    if len(data) <= MAX_LINE_BYTES:
        parsed = _loads(data)
        if isinstance(parsed, dict):
            return _count(parsed.get("prompt_eval_count")), _count(parsed.get("eval_count"))
        if parsed is not None:
            return _NONE
    # Too long to parse, or only the tail of a line: the counts close the object.
    tail = data[-TAIL_BYTES:]
    return _last_match(_OLLAMA_PROMPT, tail), _last_match(_OLLAMA_COMPLETION, tail)


def _usage_object(
    body_or_event: bytes,
    keys: tuple[str, str],
    patterns: tuple[re.Pattern[bytes], re.Pattern[bytes]],
    nested_in: str | None = None,
) -> Usage:
    # ``usage`` at the top, or inside ``nested_in`` (an SSE event's message/response).
    data = _strip_data_prefix(body_or_event)
    if not data or data == b"[DONE]":
        return _NONE
    if len(data) <= MAX_LINE_BYTES:
        parsed = _loads(data)
        if isinstance(parsed, dict):
            usage = parsed.get("usage")
            inner = parsed.get(nested_in) if nested_in else None
            if not isinstance(usage, dict) and isinstance(inner, dict):
                usage = inner.get("usage")
            if not isinstance(usage, dict):
                return _NONE
            return _count(usage.get(keys[0])), _count(usage.get(keys[1]))
        if parsed is not None:
            return _NONE
    tail = data[-TAIL_BYTES:]
    return _last_match(patterns[0], tail), _last_match(patterns[1], tail)


def openai_usage(body_or_event: bytes) -> Usage:
    """``(usage.prompt_tokens, usage.completion_tokens)`` from a /v1 body or SSE event."""
    return _usage_object(
        body_or_event, ("prompt_tokens", "completion_tokens"), (_OPENAI_PROMPT, _OPENAI_COMPLETION)
    )


def anthropic_usage(body_or_event: bytes) -> Usage:
    """``(usage.input_tokens, usage.output_tokens)`` from a /v1/messages body or SSE event."""
    return _usage_object(body_or_event, ("input_tokens", "output_tokens"), (_INPUT, _OUTPUT), "message")


def responses_usage(body_or_event: bytes) -> Usage:
    """``(usage.input_tokens, usage.output_tokens)`` from a /v1/responses body or ``response.completed``."""
    return _usage_object(body_or_event, ("input_tokens", "output_tokens"), (_INPUT, _OUTPUT), "response")


# The event whose usage is final: earlier ones (message_start) carry partial counts.
_FINAL_EVENTS = {"anthropic": b'"message_delta"', "responses": b'"response.completed"'}
HEAD_BYTES = 8 * 1024  # where an Anthropic stream's message_start is looked for

_SSE_READERS = {"openai": openai_usage, "anthropic": anthropic_usage, "responses": responses_usage}

# What marks one generated piece (one token, as Ollama streams them) in each protocol's stream.
# A marker can never match inside a JSON string: its quotes would be escaped there.
PIECE_MARKERS = {
    "ollama": b'"done":false',  # every NDJSON line before the final one
    "openai": b'"finish_reason":null',  # each chunk of chat/completions and completions but the last
    "anthropic": b'"content_block_delta"',  # text, thinking and tool-input deltas
    "responses": b'.delta"',  # response.output_text.delta, reasoning and function-call deltas
}


class UsageTracker:
    """Remembers the end of a response as it streams by; ``usage()`` reads its counts.

    ``kind`` is ``"ollama"`` (NDJSON or one JSON body), or ``"openai"``,
    ``"anthropic"`` or ``"responses"`` (SSE events or one JSON body, possibly
    pretty-printed over several lines). For the last two, only events that
    carry ``usage`` are kept (their streams end with events that do not); an
    Anthropic stream's input count is read from ``message_start`` as it passes.
    """

    __slots__ = (
        "kind",
        "_partial",
        "_partial_cut",
        "_last",
        "_tail",
        "_seen_data",
        "_started_input",
        "_head",
        "_pieces",
        "_carry",
        "_marker",
    )

    def __init__(self, kind: UsageKind) -> None:
        if kind not in ("ollama", *_SSE_READERS):
            raise ValueError(f"unknown response kind {kind!r}")
        self.kind = kind
        self._partial = bytearray()  # the line still being received
        self._partial_cut = False  # its head was dropped to stay bounded
        self._last: bytes = b""  # the last complete line (or data event) of interest
        self._tail = bytearray()  # the last TAIL_BYTES of the whole stream (openai bodies)
        self._seen_data = False  # an SSE data line went by: this is a stream
        self._started_input: int | None = None  # message_start's input_tokens (anthropic)
        self._head: bytearray | None = bytearray() if kind == "anthropic" else None
        self._pieces = 0  # generated pieces seen (markers counted)
        self._carry = b""  # the last bytes of the previous chunk: a marker may span two chunks
        self._marker = PIECE_MARKERS[kind]

    @property
    def pieces(self) -> int:
        """How many generated pieces (tokens, as Ollama streams them) went by so far."""
        return self._pieces

    def feed(self, chunk: bytes) -> None:
        """Take one chunk as it is passed on to the client."""
        if not chunk:
            return
        self._count_pieces(chunk)
        if self.kind == "anthropic" and self._head is not None:
            self._read_message_start(chunk)
        if self.kind != "ollama" and not self._seen_data:
            # Only a body (no SSE data line yet) is read from the tail: a stream stops keeping it.
            self._tail += chunk
            if len(self._tail) > TAIL_BYTES:
                del self._tail[: len(self._tail) - TAIL_BYTES]
        first = chunk.find(b"\n")
        if first < 0:
            self._extend_partial(chunk)
            return
        # The line that began in earlier chunks ends at the first newline.
        self._extend_partial(chunk[:first])
        carried, carried_cut = bytes(self._partial), self._partial_cut
        self._partial.clear()
        self._partial_cut = False
        last = chunk.rfind(b"\n")
        found = self._last_interesting(chunk, first, last)
        if found is not None:
            self._last = found
        elif self._interesting(carried, cut=carried_cut):
            self._last = carried
        self._extend_partial(chunk[last + 1 :])

    def final_line(self) -> bytes:
        """The last line (or body) fed so far, where Ollama's statistics are."""
        if self._partial.strip() and self._interesting(bytes(self._partial), cut=self._partial_cut):
            return bytes(self._partial)
        return self._last

    def usage(self) -> Usage:
        """``(prompt_tokens, completion_tokens)`` of the response fed so far."""
        last = self._last
        if self._partial.strip() and self._interesting(bytes(self._partial), cut=self._partial_cut):
            last = bytes(self._partial)  # a body or last line without a trailing newline
        if self.kind == "ollama":
            return ollama_usage(last)
        read = _SSE_READERS[self.kind]
        if not self._seen_data:
            return read(bytes(self._tail))  # one JSON body, however it is laid out
        prompt, completion = read(last)
        if prompt is None and self._started_input is not None:
            prompt = self._started_input
        return prompt, completion

    def load_ms(self) -> float | None:
        """Ollama's ``load_duration`` (ns) of a native final line or body, in ms (docs/contract.md §13)."""
        if self.kind != "ollama":
            return None  # Ollama's /v1, /v1/messages and /v1/responses do not report it
        last = self._last
        if self._partial.strip():
            last = bytes(self._partial)
        nanoseconds = _last_match(_LOAD, last.strip()[-TAIL_BYTES:])
        return None if nanoseconds is None else nanoseconds / 1e6

    def delivered(self) -> Usage:
        """The usage to charge: the final counts, else the pieces counted as completion tokens."""
        prompt, completion = self.usage()
        if completion is None and self._pieces > 0:
            completion = self._pieces
        return prompt, completion

    def _count_pieces(self, chunk: bytes) -> None:
        data = self._carry + chunk
        self._pieces += data.count(self._marker)
        # Keep fewer bytes than a marker: a match needs at least one new byte, so none counts twice.
        self._carry = data[-(len(self._marker) - 1) :]

    def _read_message_start(self, chunk: bytes) -> None:
        # The stream's first bytes, until message_start's line is whole (or HEAD_BYTES went by).
        if self._head is None:
            return  # message_start was read already (or its HEAD_BYTES went by)
        self._head += chunk[:HEAD_BYTES]
        start = self._head.find(b'"message_start"')
        end = self._head.find(b"\n", start) if start >= 0 else -1
        if end >= 0:
            line_start = self._head.rfind(b"\n", 0, start) + 1
            self._started_input, _ = anthropic_usage(bytes(self._head[line_start:end]))
        if end >= 0 or len(self._head) >= HEAD_BYTES:
            self._head = None

    def _last_interesting(self, chunk: bytes, low: int, high: int) -> bytes | None:
        # The lines strictly between the newlines at ``low`` and ``high``, last
        # first: the search stops at the first interesting one, so it is O(chunk).
        end = high
        while end > low:
            start = chunk.rfind(b"\n", low, end) + 1
            line = chunk[start:end]
            if self._interesting(line):
                return line
            end = start - 1
        return None

    def _interesting(self, line: bytes, cut: bool = False) -> bool:
        stripped = line.strip()
        if not stripped:
            return False
        if self.kind == "ollama":
            return True
        if cut:
            # The head of an overlong line is gone; it can only be a data event
            # if one was already seen (a body is read from the stream tail).
            return self._seen_data
        if stripped.startswith(b"data:"):
            self._seen_data = True
            if self.kind != "openai":
                return _FINAL_EVENTS[self.kind] in stripped
            return stripped[5:].strip() != b"[DONE]"
        return False

    def _extend_partial(self, piece: bytes) -> None:
        self._partial += piece
        if len(self._partial) > MAX_LINE_BYTES:
            del self._partial[: len(self._partial) - TAIL_BYTES]
            self._partial_cut = True
