"""The generation loop shared by the native and OpenAI endpoints: slots, pacing, faults, timings."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from simulator.exchange import NDJSON_TYPE, ClientGone, Exchange, HTTPError, dumps
from simulator.faults import BUSY_MESSAGE
from simulator.text import count_tokens, seed_of

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
    started_ns: int = field(default_factory=time.monotonic_ns)
    timings: dict[str, int] = field(default_factory=dict)


class Encoder(Protocol):
    """Turns a plan into one wire format."""

    content_type: str

    def token(self, index: int) -> bytes:
        """The stream chunk carrying token ``index``."""

    def final(self, plan: Plan) -> bytes:
        """The bytes that end a successful stream."""

    def whole(self, plan: Plan) -> Any:
        """The single JSON object of a non-streamed answer."""


def make_plan(ex: Exchange, model: str, prompt: str, stream: bool, cap: Any) -> Plan:
    """Apply the config, ``X-Sim-*`` headers and the request's token cap."""
    config = ex.config
    tokens = int(ex.header_number("x-sim-tokens", config.tokens, integer=True))
    delay = ex.header_number("x-sim-delay", config.token_delay)
    first_delay = ex.header_number("x-sim-first-token-delay", config.first_token_delay)
    count, reason = tokens, "stop"
    # Ollama treats a negative num_predict as "no limit".
    if isinstance(cap, int) and not isinstance(cap, bool) and 0 <= cap < tokens:
        count, reason = cap, "length"
    return Plan(model, seed_of(prompt), count, reason, stream, delay, first_delay, count_tokens(prompt))


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


def _finish_timings(plan: Plan, dispatched_ns: int, first_ns: int) -> None:
    end = time.monotonic_ns()
    plan.timings = {
        "total_duration": max(1, end - plan.started_ns),
        "load_duration": max(1, dispatched_ns - plan.started_ns),
        "prompt_eval_count": plan.prompt_tokens,
        "prompt_eval_duration": max(1, first_ns - dispatched_ns),
        "eval_count": plan.count,
        "eval_duration": max(1, end - first_ns),
    }


async def run_generation(ex: Exchange, plan: Plan, encoder: Encoder) -> None:
    """Produce the tokens of ``plan`` as a stream or as one object, honouring faults and the client."""
    ex.watch()
    async with slot(ex):
        ex.state.mark_loaded(plan.model)
        dispatched = time.monotonic_ns()
        await ex.pause(plan.first_delay)
        first = time.monotonic_ns()
        if plan.stream:
            await ex.start(200, encoder.content_type)
            await _stream_tokens(ex, plan, encoder)
            _finish_timings(plan, dispatched, first)
            await ex.finish(encoder.final(plan))
        else:
            after = min(ex.fault.after, plan.count) if ex.fault.any_mid else plan.count
            await ex.pause(plan.delay * max(0, after - 1))
            await ex.mid_fault()
            await ex.pause(plan.delay * (plan.count - max(after, 1)))
            _finish_timings(plan, dispatched, first)
            await ex.json(encoder.whole(plan))


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
