"""S1–S5: the same load sent straight to the simulator and through the gateway, compared figure by figure."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from bench import streams
from bench.loadgen import run_h2load, run_wrk
from bench.procs import PeakSampler, cpu_seconds, process_tree, rss_of
from bench.report import Row
from bench.sizes import Sizes
from bench.stack import GATEWAY_SLOTS, Target, sim_config
from simulator.config import DEFAULT_MODELS, SimulatorConfig

MODEL = DEFAULT_MODELS[0]
SMALL_REPLY_TOKENS = 8
H2LOAD_PERIOD_MS = 5  # one new connection every 5 ms: sequential, as c=1 asks
CHAT = "/api/chat"
STREAM_SLACK_S = 60  # on top of a stream's ideal duration before the client gives up on it


def chat_body(tokens: int, *, stream: bool) -> dict:
    """A small /api/chat request asking for exactly ``tokens`` tokens."""
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say something about sea dragons."}],
        "stream": stream,
        "options": {"num_predict": tokens},
    }


@dataclass
class Stack:
    """The two targets of one scenario: the simulator itself and the gateway in front of it."""

    direct: Target
    gateway: Target
    keys: dict[int, str] = field(default_factory=dict)  # priority -> API key
    admin_token: str = ""

    @property
    def targets(self) -> tuple[Target, Target]:
        """Direct first: the gateway then runs against a simulator already warm."""
        return self.direct, self.gateway


@dataclass(frozen=True)
class Scenario:
    """One benchmark: how the simulator behaves, how many gateway slots, and what to measure."""

    id: str
    title: str
    sim: Callable[[Sizes], SimulatorConfig]
    run: Callable[[Stack, Sizes], list[Row]]
    slots: int = GATEWAY_SLOTS
    priorities: tuple[int, ...] = (5,)


def check_target(target: Target, body: dict) -> None:
    """One request before measuring, so a broken setup fails with its reason instead of as figures."""
    response = httpx.post(target.url(CHAT), json=body, headers=target.headers, timeout=30)
    if response.status_code != 200 or b'"done":true' not in response.content.replace(b" ", b""):
        raise RuntimeError(f"{target.name} answered {response.status_code}: {response.text[:300]}")


def _warm_up(target: Target, body: dict) -> None:
    run_wrk(target.url(CHAT), body, target.headers, connections=4, threads=1, seconds=1)


def s1_latency(stack: Stack, sizes: Sizes) -> list[Row]:
    """S1: one client, small non-streaming chats; what the gateway adds to the median."""
    body = chat_body(SMALL_REPLY_TOKENS, stream=False)
    wrk, h2, cpu = {}, {}, {}
    for target in stack.targets:
        check_target(target, body)
        _warm_up(target, body)
        before = cpu_seconds(target.pid)
        wrk[target.name] = run_wrk(
            target.url(CHAT), body, target.headers, connections=1, threads=1, seconds=sizes.s1_seconds
        )
        cpu[target.name] = (cpu_seconds(target.pid) - before) * 1e6 / max(1, wrk[target.name].requests)
        h2[target.name] = run_h2load(
            target.url(CHAT), body, target.headers, requests=sizes.s1_requests, period_ms=H2LOAD_PERIOD_MS
        )
    d, g = wrk["direct"], wrk["gateway"]
    added = g.p50_ms - d.p50_ms
    return [
        Row("S1", "p50 latency, ms (wrk)", d.p50_ms, g.p50_ms, f"+≤ 0.5 ms ({added:+.2f})", added <= 0.5),
        Row("S1", "p99 latency, ms (wrk)", d.p99_ms, g.p99_ms),
        Row(
            "S1",
            "1st byte, new conn., mean ms (h2load)",
            h2["direct"].ttfb_mean_ms,
            h2["gateway"].ttfb_mean_ms,
        ),
        Row(
            "S1", "1st byte, new conn., max ms (h2load)", h2["direct"].ttfb_max_ms, h2["gateway"].ttfb_max_ms
        ),
        Row("S1", "p50 latency, new conn., ms (h2load)", h2["direct"].p50_ms, h2["gateway"].p50_ms),
        Row(
            "S1",
            "errors (wrk + h2load)",
            d.errors + h2["direct"].failed,
            g.errors + h2["gateway"].failed,
            "0",
            g.errors + h2["gateway"].failed == 0,
        ),
        _cpu_row("S1", cpu, "request"),
    ]


def s2_throughput(stack: Stack, sizes: Sizes) -> list[Row]:
    """S2: many clients on keep-alive connections; throughput and server CPU per request."""
    body = chat_body(SMALL_REPLY_TOKENS, stream=False)
    runs, cpu = {}, {}
    for target in stack.targets:
        check_target(target, body)
        _warm_up(target, body)
        before = cpu_seconds(target.pid)
        runs[target.name] = run_wrk(
            target.url(CHAT),
            body,
            target.headers,
            connections=sizes.s2_connections,
            threads=2,
            seconds=sizes.s2_seconds,
        )
        cpu[target.name] = (cpu_seconds(target.pid) - before) / max(1, runs[target.name].requests) * 1e6
    d, g = runs["direct"], runs["gateway"]
    ratio = g.rps / d.rps if d.rps else 0.0
    return [
        Row(
            "S2",
            f"req/s, {sizes.s2_connections} keep-alive connections",
            d.rps,
            g.rps,
            "≥ 0.25× direct",
            ratio >= 0.25,
        ),
        Row("S2", "errors", d.errors, g.errors, "0", g.errors == 0),
        Row("S2", "p99 latency, ms", d.p99_ms, g.p99_ms),
        _cpu_row("S2", cpu, "request"),
    ]


def _streams(
    target: Target, body: dict, count: int, timeout: float, path: str = CHAT
) -> tuple[list[streams.StreamResult], float]:
    """``count`` concurrent streams; their results and the server's CPU µs per line received."""
    request = streams.build_request(target.host, target.port, path, body, target.headers)
    before = cpu_seconds(target.pid)
    results = streams.run(streams.fetch_many(target.host, target.port, [request] * count, timeout))
    lines = sum(r.lines for r in results)
    return results, (cpu_seconds(target.pid) - before) * 1e6 / max(1, lines)


def _cpu_row(sid: str, cpu: dict[str, float], unit: str = "chunk") -> Row:
    return Row(sid, f"server CPU per {unit}, µs (own process)", cpu["direct"], cpu["gateway"])


def _complete(results: list[streams.StreamResult], tokens: int) -> int:
    # A stream is complete when it ended with done:true after all its tokens (+1 for the done line).
    return sum(1 for r in results if r.ok and r.lines >= tokens + 1)


def _percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0–1) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _first_error(results: list[streams.StreamResult]) -> str:
    bad = next((r for r in results if not r.ok), None)
    return "" if bad is None else f" — e.g. status {bad.status}: {bad.error or 'no done line'}"


def s3_streams(stack: Stack, sizes: Sizes) -> list[Row]:
    """S3: many concurrent token-paced streams; every one complete, none slowed."""
    n, tokens, delay = sizes.s3_streams, sizes.s3_tokens, sizes.s3_delay_ms / 1000
    ideal = tokens * delay
    body = chat_body(tokens, stream=True)
    out, cpu = {}, {}
    for target in stack.targets:
        check_target(target, chat_body(1, stream=False))
        out[target.name], cpu[target.name] = _streams(target, body, n, ideal + STREAM_SLACK_S)
    d, g = out["direct"], out["gateway"]
    p99 = {k: _percentile([r.total for r in v if r.ok], 0.99) for k, v in out.items()}
    budget = ideal * 1.05
    done_g = _complete(g, tokens)
    return [
        Row("S3", f"complete streams of {n}", _complete(d, tokens), done_g, f"all {n}", done_g == n),
        Row(
            "S3",
            f"total p99, s ({tokens} tok × {sizes.s3_delay_ms:g} ms)",
            p99["direct"],
            p99["gateway"],
            f"≤ {budget:.2f} s (ideal {ideal:.2f})",
            p99["gateway"] <= budget,
        ),
        Row(
            "S3",
            "time to 1st byte p99, ms",
            _percentile([r.ttfb * 1000 for r in d if r.ttfb is not None], 0.99),
            _percentile([r.ttfb * 1000 for r in g if r.ttfb is not None], 0.99),
        ),
        _cpu_row("S3", cpu),
    ] + _error_note("S3", g)


def _error_note(sid: str, results: list[streams.StreamResult]) -> list[Row]:
    note = _first_error(results)
    return [Row(sid, "first gateway failure" + note, None, None)] if note else []


def _one_long_stream(
    stack: Stack,
    sizes: Sizes,
    sid: str,
    path: str,
    body: dict,
    complete: Callable[[streams.StreamResult], bool],
    unit: str,
) -> list[Row]:
    """One stream of ``sizes.s4_tokens`` tokens, ``s4_runs`` times per target: its lines per second."""
    rates: dict[str, list[float]] = {}
    cpu: dict[str, float] = {}
    failures: dict[str, list[streams.StreamResult]] = {}
    for target in stack.targets:
        check_target(target, chat_body(1, stream=False))
        costs = []
        for _ in range(sizes.s4_runs):
            (result,), cost = _streams(target, body, 1, 120, path=path)
            costs.append(cost)
            if complete(result) and result.total:
                rates.setdefault(target.name, []).append(result.lines / result.total)
            else:
                failures.setdefault(target.name, []).append(result)
        cpu[target.name] = statistics.median(costs)
    d = statistics.median(rates["direct"]) if rates.get("direct") else float("nan")
    g = statistics.median(rates["gateway"]) if rates.get("gateway") else float("nan")
    ok = bool(rates.get("gateway")) and not failures.get("gateway") and g >= 0.30 * d
    title = f"{unit}s/s, 1 {path} stream × {sizes.s4_tokens:,} tok (median of {sizes.s4_runs})"
    return [
        Row(sid, title, d, g, "≥ 0.30× direct", ok),
        _cpu_row(sid, cpu, unit),
    ] + _error_note(sid, failures.get("gateway", []))


def s4_one_long_stream(stack: Stack, sizes: Sizes) -> list[Row]:
    """S4: one stream of many tokens with no pause; the relay's raw speed."""
    tokens = sizes.s4_tokens

    def complete(result: streams.StreamResult) -> bool:
        return result.ok and result.lines >= tokens + 1

    return _one_long_stream(stack, sizes, "S4", CHAT, chat_body(tokens, stream=True), complete, "chunk")


def messages_body(tokens: int) -> dict:
    """A streamed Anthropic Messages request (Claude Code's protocol) for exactly ``tokens`` tokens."""
    return {
        "model": MODEL,
        "max_tokens": tokens,
        "messages": [{"role": "user", "content": "Say something about sea dragons."}],
        "stream": True,
    }


def s4m_one_long_messages_stream(stack: Stack, sizes: Sizes) -> list[Row]:
    """S4M: S4 on /v1/messages: one Anthropic stream of many tokens (three SSE lines per token)."""
    tokens = sizes.s4_tokens

    def complete(result: streams.StreamResult) -> bool:
        # An Anthropic stream ends with its message_stop event, not Ollama's done line.
        ended = result.status == 200 and b'"message_stop"' in result.last_line
        return ended and result.lines >= 3 * tokens

    return _one_long_stream(stack, sizes, "S4M", "/v1/messages", messages_body(tokens), complete, "SSE line")


def s5_many_streams(stack: Stack, sizes: Sizes) -> list[Row]:
    """S5: a thousand slow concurrent streams; all complete, and the gateway stays small."""
    n, tokens, delay = sizes.s5_streams, sizes.s5_tokens, sizes.s5_delay_ms / 1000
    body = chat_body(tokens, stream=True)
    out, peak, idle, cpu = {}, {}, {}, {}
    for target in stack.targets:
        check_target(target, chat_body(1, stream=False))
        pids = process_tree(target.pid)
        idle[target.name] = rss_of(pids)
        with PeakSampler(lambda pids=pids: rss_of(pids)) as sampler:
            out[target.name], cpu[target.name] = _streams(target, body, n, tokens * delay + STREAM_SLACK_S)
        peak[target.name] = sampler.peak
    d, g = out["direct"], out["gateway"]
    done_g = _complete(g, tokens)
    return [
        Row("S5", f"complete streams of {n}", _complete(d, tokens), done_g, f"all {n}", done_g == n),
        Row(
            "S5", "server RSS peak, MiB", peak["direct"], peak["gateway"], "≤ 100 MiB", peak["gateway"] <= 100
        ),
        Row("S5", "server RSS idle before, MiB", idle["direct"], idle["gateway"]),
        Row(
            "S5",
            f"total p99, s (ideal {tokens * delay:.1f})",
            _percentile([r.total for r in d if r.ok], 0.99),
            _percentile([r.total for r in g if r.ok], 0.99),
        ),
        _cpu_row("S5", cpu),
    ] + _error_note("S5", g)


def _paced(attr: str) -> Callable[[Sizes], SimulatorConfig]:
    return lambda sizes: sim_config(getattr(sizes, attr))


def _unpaced(_sizes: Sizes) -> SimulatorConfig:
    return sim_config()


SCENARIOS = (
    Scenario("S1", "c=1, small non-streaming /api/chat", _unpaced, s1_latency),
    Scenario("S2", "c=64, small non-streaming /api/chat", _unpaced, s2_throughput),
    Scenario("S3", "200 concurrent streams × 100 tokens at 20 ms", _paced("s3_delay_ms"), s3_streams),
    Scenario("S4", "1 stream × 20,000 tokens, no delay", _unpaced, s4_one_long_stream),
    Scenario("S4M", "S4 as an Anthropic /v1/messages stream", _unpaced, s4m_one_long_messages_stream),
    Scenario("S5", "1,000 concurrent streams × 100 tokens at 100 ms", _paced("s5_delay_ms"), s5_many_streams),
)
