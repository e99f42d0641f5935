"""The generation loop shared by the native and OpenAI endpoints: slots, pacing, faults, timings."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from simulator import vram
from simulator.exchange import NDJSON_TYPE, ClientGone, Exchange, HTTPError, dumps, go_json
from simulator.faults import BUSY_MESSAGE
from simulator.prefix_cache import tokens_of
from simulator.text import answer_text, count_tokens, say_text, seed_of, split_tokens, token_json
from simulator.tools import call_tokens, tool_calls_for

YIELD_EVERY = 64  # with no delay, let other streams (and disconnects) in this often


@dataclass(slots=True)
class Plan:
    """What one generation will produce and how fast."""

    model: str
    seed: int
    count: int
    reason: str
    stream: bool
    delay: float
    first_delay: float
    prompt_tokens: int
    prompt: str = ""  # the prompt text, for the prefix cache
    options: Any = None  # the request's ``options`` (its Runner keys decide reloads)
    said: tuple[bytes, ...] | None = None  # the JSON literals of a ``!say`` answer's tokens
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # native ``message.tool_calls``
    started_ns: int = field(default_factory=time.monotonic_ns)
    timings: dict[str, int] = field(default_factory=dict)

    def token(self, index: int) -> bytes:
        """Token ``index`` of the answer as a JSON string literal."""
        return self.said[index] if self.said is not None else token_json(self.seed, index)

    def text(self) -> str:
        """The whole answer text the tokens spell."""
        if self.said is not None:
            return "".join(json.loads(literal) for literal in self.said[: self.count])
        return answer_text(self.seed, self.count)

    @property
    def eval_count(self) -> int:
        """Tokens generated: the text's and the tool calls'."""
        return self.count + call_tokens(self.tool_calls)


class Encoder(Protocol):
    """Turns a plan into one wire format."""

    content_type: str

    def token(self, index: int) -> bytes:
        """The stream chunk carrying token ``index``."""

    def final(self, plan: Plan) -> bytes:
        """The bytes that end a successful stream."""

    def whole(self, plan: Plan) -> Any:
        """The single JSON object of a non-streamed answer (a string: a text/plain body)."""

    def tool_chunk(self, plan: Plan) -> bytes:
        """The stream chunk carrying ``plan.tool_calls`` (only for formats that take tools)."""


def make_plan(
    ex: Exchange,
    model: str,
    prompt: str,
    stream: bool,
    cap: Any,
    *,
    last_user: str = "",
    tools: list[dict[str, Any]] | None = None,
) -> Plan:
    """Apply the config, ``X-Sim-*`` headers, the request's token cap, ``!say`` and offered tools."""
    config = ex.config
    tokens = int(ex.header_number("x-sim-tokens", config.tokens, integer=True))
    delay = ex.header_number("x-sim-delay", config.token_delay)
    first_delay = ex.header_number("x-sim-first-token-delay", config.first_token_delay)
    seed = seed_of(prompt)
    said_text = say_text(last_user)
    said = None if said_text is None else tuple(go_json(t).encode() for t in split_tokens(said_text))
    calls = tool_calls_for(tools or [], seed) if said is None else []
    if said is not None:
        tokens = len(said)
    elif calls:
        tokens = 0  # a model that calls a tool answers with the call alone
    count, reason = tokens, "stop"
    # Ollama treats a negative num_predict as "no limit".
    if isinstance(cap, int) and not isinstance(cap, bool) and 0 <= cap < tokens:
        count, reason = cap, "length"
    plan = Plan(model, seed, count, reason, stream, delay, first_delay, count_tokens(prompt), prompt)
    plan.said, plan.tool_calls = said, calls
    return plan


@asynccontextmanager
async def slot(ex: Exchange) -> AsyncIterator[None]:
    """Hold one of ``num_parallel`` slots, waiting in a line of ``max_queue``, else 503 like Ollama."""
    limit = ex.config.num_parallel
    gate = ex.state.gate
    if limit > 0:
        granted = gate.try_acquire(limit, ex.config.max_queue)
        if granted is False:
            raise HTTPError(503, BUSY_MESSAGE, "rejected")
        if granted is not True:
            ex.watch()
            try:
                await ex.wait(granted)
            except BaseException:
                gate.abandon(granted)
                raise
    ex.entry["dispatched"] = time.time()
    try:
        yield
    finally:
        if limit > 0:
            gate.release()


def _finish_timings(plan: Plan, load_ns: int, dispatched_ns: int, first_ns: int) -> None:
    end = time.monotonic_ns()
    plan.timings = {
        "total_duration": max(1, end - plan.started_ns),
        "load_duration": max(1, load_ns),
        "prompt_eval_count": plan.prompt_tokens,
        "prompt_eval_duration": max(1, first_ns - dispatched_ns),
        "eval_count": plan.eval_count,
        "eval_duration": max(1, end - first_ns),
    }


async def run_generation(ex: Exchange, plan: Plan, encoder: Encoder, keep_alive: Any = None) -> None:
    """Produce the tokens of ``plan`` as a stream or as one object, honouring faults and the client."""
    ex.watch()
    async with slot(ex), vram.use(ex, plan.model, keep_alive, plan.options) as runner:
        dispatched = time.monotonic_ns()
        # Prompt evaluation: the tokens past the longest prefix a slot of this runner has cached.
        tokens = tokens_of(plan.prompt)
        cache_slot, cached = runner.cache.take(tokens) if runner is not None else (-1, 0)
        finished = None
        try:
            await ex.pause(ex.config.prompt_eval_rate * (len(tokens) - cached) + plan.first_delay)
            first = time.monotonic_ns()
            await _generate(ex, plan, encoder, dispatched, first)
            finished = tokens + tokens_of(plan.text())  # what the slot's KV cache now holds
        finally:
            if runner is not None:
                runner.cache.done(cache_slot, finished)


async def _generate(ex: Exchange, plan: Plan, encoder: Encoder, dispatched: int, first: int) -> None:
    """Send the answer, streamed or whole."""
    if plan.stream:
        await ex.start(200, encoder.content_type, getattr(encoder, "stream_headers", None))
        await _stream_tokens(ex, plan, encoder)
        if plan.tool_calls:
            await ex.pause(plan.delay)
            await ex.chunk(encoder.tool_chunk(plan))
        _finish_timings(plan, ex.load_ns, dispatched, first)
        await ex.finish(encoder.final(plan))
    else:
        after = min(ex.fault.after, plan.count) if ex.fault.any_mid else plan.count
        await ex.pause(plan.delay * max(0, after - 1))
        await ex.mid_fault()
        await ex.pause(plan.delay * (plan.count - max(after, 1)))
        _finish_timings(plan, ex.load_ns, dispatched, first)
        whole = encoder.whole(plan)
        if isinstance(whole, str):
            await ex.respond(200, whole.encode(), "text/plain")
        else:
            await ex.json(whole)


async def _stream_tokens(ex: Exchange, plan: Plan, encoder: Encoder) -> None:
    after = ex.fault.after if ex.fault.any_mid else -1
    delay = plan.delay
    token = encoder.token
    chunk = ex.chunk
    for index in range(plan.count):
        if index:
            if delay:
                await ex.pause(delay)
            elif not index % YIELD_EVERY:
                await asyncio.sleep(0)
                if ex.gone:
                    raise ClientGone
        if index == after:
            await ex.mid_fault()
        await chunk(token(index))
    await ex.mid_fault()  # a fault set after the last token strikes before the final chunk


async def stream_lines(ex: Exchange, lines: list[Any], final: Any) -> None:
    """Send status lines (pull, push, create) paced like tokens, or only ``final`` when not streaming."""
    delay = ex.header_number("x-sim-delay", ex.config.token_delay)
    stream = not (isinstance(ex.payload, dict) and ex.payload.get("stream") is False)
    ex.watch()
    if not stream:
        await ex.pause(delay * len(lines))
        await ex.mid_fault()
        await ex.json(final)
        return
    await ex.start(200, NDJSON_TYPE)
    after = ex.fault.after if ex.fault.any_mid else -1
    for index, line in enumerate(lines):
        if index:
            await ex.pause(delay)
        if index == after:
            await ex.mid_fault()
        await ex.chunk(dumps(line) + b"\n")
    await ex.mid_fault()
    await ex.finish(dumps(final) + b"\n")
