"""The GPU does no wasted work (docs/contract.md §12): two benchmarks through the real gateway.

**a. Mixed clients.** One model on one backend (2 slots). Four kinds of client send the same
chat: ``num_ctx`` 2048, ``num_ctx`` 8192, no options, and no options with ``keep_alive: 0``.
The simulator reloads the model whenever a request's Runner options differ from the loaded
ones, and unloads it after a ``keep_alive: 0`` request, as Ollama does (``server/sched.go``).
Compared: ``LOAD_OPTIONS=client`` (as sent) against ``LOAD_OPTIONS=server`` with
``KEEP_ALIVE_MIN=5m``. Reloads are the simulator's loads after the first; GPU seconds lost are
those reloads times the load time; the wait is each request's time to its first token.

**b. Multi-turn conversations.** Three backends (4 slots each, a prefix cache per slot).
Ten users each hold three conversations in a row, six turns each (30 x 6), every turn
sending the whole history. Prompt evaluation costs ``--eval-rate`` seconds per token not
already cached on the backend that serves the turn. Compared: ``STICKY_MAX_DELAY=10``
against ``0``. Prompt evaluation is the sum of the responses' ``prompt_eval_duration``; time to
first token is measured by the client.

    .venv/bin/python -m bench.gpu_waste                # both, three runs each
    .venv/bin/python -m bench.gpu_waste --quick --runs 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.gpu_waste_report import mixed_goals, mixed_table, report, turns_goals, turns_table
from bench.procs import Service
from bench.stack import prepare_gateway, start_gateway, start_simulator
from bench.trace_model import percentile
from simulator.config import SimulatorConfig

MODEL = "llama3.2:latest"
SLOTS = 2  # (a): slots of the one backend
TURN_SLOTS = 4  # (b): slots of each backend, and so prefix-cache entries (OLLAMA_NUM_PARALLEL=4)
KINDS = {
    "num_ctx 2048": ({"num_ctx": 2048}, None),
    "num_ctx 8192": ({"num_ctx": 8192}, None),
    "no options": ({}, None),
    "keep_alive 0": ({}, 0),
}
SYSTEM = "You answer briefly and well."  # 5 tokens: below llama.cpp's 10 % slot similarity
USER_WORDS = 60  # tokens of each user message (b)


@dataclass
class Sizes:
    """How big a run is."""

    requests: int = 36  # (a)
    rate: float = 1.0  # (a) arrivals per second
    load_time: float = 0.8  # (a) seconds per model load
    users: int = 10  # (b)
    conversations: int = 3  # (b) per user, one after another: 30 conversations
    turns: int = 6  # (b)
    think: float = 0.5  # (b) mean seconds between a turn's answer and the next turn
    eval_rate: float = 0.004  # (b) seconds per prompt token not cached
    tokens: int = 40  # tokens of each answer
    token_delay: float = 0.02


QUICK = Sizes(requests=12, rate=2.0, load_time=0.3, users=3, conversations=2, turns=3, think=0.1)


@dataclass
class Stack:
    """Simulators and the gateway before them."""

    simulators: list[Service]
    gateway: Service
    url: str
    key: str

    def sim_stats(self) -> list[dict]:
        """Each simulator's ``/_sim/stats``."""
        return [
            httpx.get(f"http://127.0.0.1:{s.port}/_sim/stats", timeout=10).json() for s in self.simulators
        ]

    def stop(self) -> None:
        """Stop everything."""
        self.gateway.stop()
        for simulator in self.simulators:
            simulator.stop()


def start(workdir: Path, backends: int, sim: SimulatorConfig, env: dict[str, str]) -> Stack:
    """``backends`` simulators and one gateway with as many slots on each as it has parallel ones."""
    simulators: list[Service] = []
    try:
        for _ in range(backends):
            simulators.append(start_simulator(workdir, sim))
        urls = [f"http://127.0.0.1:{s.port}" for s in simulators]
        setup = prepare_gateway(workdir, urls[0], sim.num_parallel, [1])
        setup.env["SEADRAGON_OLLAMA_URLS"] = ",".join(f"{url}={sim.num_parallel}" for url in urls)
        setup.env["SEADRAGON_HEALTH_INTERVAL"] = "1"
        setup.env.update(env)
        gateway = start_gateway(workdir, setup)
    except BaseException:
        for simulator in simulators:
            simulator.stop()
        raise
    return Stack(simulators, gateway, f"http://127.0.0.1:{setup.port}", setup.keys[1])


async def streamed(client: httpx.AsyncClient, body: dict, key: str) -> tuple[float, dict, str]:
    """(seconds to the first token, the final line, the answer text) of one streamed chat."""
    started = time.monotonic()
    first, final, text = None, {}, []
    async with client.stream("POST", "/api/chat", json=body, headers={"X-API-Key": key}) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {(await response.aread())[:200]!r}")
        async for line in response.aiter_lines():
            if not line.strip():
                continue
            data = json.loads(line)
            if "error" in data:
                raise RuntimeError(data["error"])
            if first is None:
                first = time.monotonic() - started
            text.append(data.get("message", {}).get("content", ""))
            if data.get("done"):
                final = data
    return first or 0.0, final, "".join(text)


# -- a. mixed clients --------------------------------------------------------------------


def mixed_configs() -> dict[str, dict[str, str]]:
    """The two runs of benchmark (a)."""
    return {
        "LOAD_OPTIONS=client": {"SEADRAGON_LOAD_OPTIONS": "client"},
        "LOAD_OPTIONS=server, KEEP_ALIVE_MIN=5m": {
            "SEADRAGON_LOAD_OPTIONS": "server",
            "SEADRAGON_KEEP_ALIVE_MIN": "5m",
        },
    }


def mixed_arrivals(sizes: Sizes, seed: int) -> list[tuple[float, str]]:
    """(time, kind) of each request: Poisson arrivals, kinds in equal shares."""
    rng = random.Random(seed)
    at, out = 0.0, []
    for _ in range(sizes.requests):
        at += rng.expovariate(sizes.rate)
        out.append((at, rng.choice(sorted(KINDS))))
    return out


async def run_mixed(stack: Stack, arrivals: list[tuple[float, str]]) -> list[float]:
    """Send the arrivals; each request's time to first token."""
    limits = httpx.Limits(max_connections=len(arrivals) + 4)
    async with httpx.AsyncClient(base_url=stack.url, timeout=600, limits=limits) as client:
        begin = time.monotonic()

        async def one(at: float, kind: str) -> float:
            await asyncio.sleep(max(0.0, begin + at - time.monotonic()))
            options, keep_alive = KINDS[kind]
            body = {"model": MODEL, "messages": [{"role": "user", "content": f"{kind} asks"}]}
            if options:
                body["options"] = options
            if keep_alive is not None:
                body["keep_alive"] = keep_alive
            ttft, _, _ = await streamed(client, body, stack.key)
            return ttft

        return list(await asyncio.gather(*(one(at, kind) for at, kind in arrivals)))


def start_mixed(workdir: Path, env: dict, sizes: Sizes) -> Stack:
    """Benchmark (a)'s stack: one backend whose loads take ``load_time``."""
    sim = SimulatorConfig(
        tokens=sizes.tokens,
        token_delay=sizes.token_delay,
        num_parallel=SLOTS,
        load_time=sizes.load_time,
        models=(MODEL,),
        log_limit=100,
    )
    return start(workdir, 1, sim, env)


def measure_mixed(stack: Stack, name: str, sizes: Sizes, seed: int) -> dict:
    """One run of benchmark (a) under one configuration."""
    waits = asyncio.run(run_mixed(stack, mixed_arrivals(sizes, seed)))
    loads = stack.sim_stats()[0]["vram"]["loads"]
    reloads = max(loads - 1, 0)
    return {
        "config": name,
        "reloads": reloads,
        "lost_s": reloads * sizes.load_time,
        "p50": percentile(waits, 0.5),
        "p95": percentile(waits, 0.95),
    }


# -- b. multi-turn conversations ---------------------------------------------------------


async def run_turns(stack: Stack, sizes: Sizes, seed: int) -> tuple[float, list[float]]:
    """Every user's conversations; (prompt-evaluation seconds, time to first token of each turn)."""
    evaluation, ttfts = 0.0, []
    async with httpx.AsyncClient(base_url=stack.url, timeout=600) as client:

        async def user(number: int) -> None:
            nonlocal evaluation
            rng = random.Random(seed * 100 + number)
            for conversation in range(sizes.conversations):
                name = f"user {number} conversation {conversation}"
                messages = [{"role": "system", "content": SYSTEM}]
                for turn in range(sizes.turns):
                    words = " ".join(f"{name.replace(' ', '_')}_t{turn}_w{i}" for i in range(USER_WORDS))
                    messages.append({"role": "user", "content": words})
                    body = {"model": MODEL, "messages": messages}
                    ttft, final, answer = await streamed(client, body, stack.key)
                    ttfts.append(ttft)
                    evaluation += final.get("prompt_eval_duration", 0) / 1e9
                    messages.append({"role": "assistant", "content": answer})
                    await asyncio.sleep(rng.uniform(0, 2 * sizes.think))

        await asyncio.gather(*(user(n) for n in range(sizes.users)))
    return evaluation, ttfts


def start_turns(workdir: Path, env: dict, sizes: Sizes) -> Stack:
    """Benchmark (b)'s stack: three backends pricing uncached prompt tokens."""
    sim = SimulatorConfig(
        tokens=sizes.tokens,
        token_delay=sizes.token_delay,
        num_parallel=TURN_SLOTS,
        prompt_eval_rate=sizes.eval_rate,
        models=(MODEL,),
        log_limit=100,
    )
    return start(workdir, 3, sim, env)


def measure_turns(stack: Stack, name: str, sizes: Sizes, seed: int) -> dict:
    """One run of benchmark (b) under one configuration."""
    evaluation, ttfts = asyncio.run(run_turns(stack, sizes, seed))
    return {
        "config": name,
        "eval_s": evaluation,
        "p50": percentile(ttfts, 0.5),
        "p95": percentile(ttfts, 0.95),
        "turns": len(ttfts),
    }


def turn_configs() -> dict[str, dict[str, str]]:
    """The two runs of benchmark (b)."""
    return {
        "STICKY_MAX_DELAY=10": {"SEADRAGON_STICKY_MAX_DELAY": "10"},
        "STICKY_MAX_DELAY=0": {"SEADRAGON_STICKY_MAX_DELAY": "0"},
    }


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks ``--runs`` times; print the tables and goals (exit 1 if one is missed)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=("a", "b"), default=None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test, not a measurement")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else Sizes()
    met = True
    with tempfile.TemporaryDirectory(prefix="seadragon-gpu-waste-") as tmp:
        workdir = Path(tmp)
        if args.only in (None, "a"):
            rows = []
            for run in range(1, args.runs + 1):
                rows += side_by_side(workdir, mixed_configs(), start_mixed, measure_mixed, sizes, run)
            shape = f"{sizes.requests} requests at {sizes.rate:g}/s, {sizes.load_time:g} s loads"
            print(f"a. mixed clients: {shape}\n")
            print(mixed_table(rows) + "\n")
            met &= report(mixed_goals(rows))
        if args.only in (None, "b"):
            rows = []
            for run in range(1, args.runs + 1):
                rows += side_by_side(workdir, turn_configs(), start_turns, measure_turns, sizes, run)
            print(
                f"b. multi-turn: {sizes.users} users x {sizes.conversations} conversations x {sizes.turns} "
                f"turns over 3 backends, {sizes.eval_rate * 1000:g} ms per uncached prompt token\n"
            )
            print(turns_table(rows) + "\n")
            met &= report(turns_goals(rows))
    return 0 if met else 1


def side_by_side(workdir: Path, configs: dict, start_fn, measure_fn, sizes: Sizes, run: int) -> list[dict]:
    """Start each configuration's stack (one after another: migrations share Alembic's globals),
    measure them at once (they share no state), stop them; one row per configuration."""
    stacks: dict[str, Stack] = {}
    try:
        for name, env in configs.items():
            stacks[name] = start_fn(workdir, env, sizes)
        with ThreadPoolExecutor(max_workers=len(stacks)) as pool:
            futures = [pool.submit(measure_fn, stack, name, sizes, run) for name, stack in stacks.items()]
            return [{"run": run, **future.result()} for future in futures]
    finally:
        for stack in stacks.values():
            stack.stop()


if __name__ == "__main__":
    sys.exit(main())
