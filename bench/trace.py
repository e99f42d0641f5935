"""Replay a mixed-model trace through the real gateway under three scheduling configurations.

docs/contract.md §8 (model affinity: "measured on a mixed-model trace against the simulator
with a model swap cost"). One slot on the simulator (``--max-loaded 1 --load-time L``), three
models, three classes of client (priorities 1, 3, 5), arrivals at 80 % then 120 % of what the
slot serves when it never has to swap (the GPU's own rate: one generation at a time;
``--capacity arrival-order`` takes generation + expected swap instead, a lighter load whose short
queue leaves little to group). Each configuration gets its own
simulator and gateway; the three run side by side (they share no state, and waiting costs no CPU):

  a. arrival order      every key at one priority, FAIR_SHARE=0, MODEL_AFFINITY=0, no aging
  b. priority + aging   the classes' priorities, AGING_PER_MINUTE=--aging, no fair share/affinity
  c. + fair share + affinity   b with FAIR_SHARE=0.5, MODEL_AFFINITY=--affinity,
                        AFFINITY_MAX_DELAY=--max-delay

Swaps are the simulator's model loads (``GET /_sim/stats`` ``vram.loads``, the first load
included); waits are what the gateway reports (``X-Seadragon-Queue-Wait``). Below the table, the
swaps of an offline replay that always serves the loaded model first show how few swaps any
reordering of this trace could reach.

    .venv/bin/python -m bench.trace                     # 100 requests, 0.5 s generations, 2 s loads
    .venv/bin/python -m bench.trace --requests 30 --generation 0.1 --load-time 0.4   # quick
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.procs import Service
from bench.stack import prepare_gateway, start_gateway, start_simulator
from bench.trace_model import (
    CLASSES,
    MODELS,
    Arrival,
    Outcome,
    greedy_swaps,
    make_trace,
    service_s,
    table,
    waits_by_class,
)
from simulator.config import SimulatorConfig

TOKENS = 10  # per generation; the token delay makes it last --generation seconds
QUESTION = [{"role": "user", "content": "Summarise the trace."}]


def configurations(args: argparse.Namespace) -> dict[str, dict]:
    """The three runs: whether keys carry the classes' priorities, and the scheduling settings."""
    off = {"SEADRAGON_FAIR_SHARE": "0", "SEADRAGON_MODEL_AFFINITY": "0"}
    aging = {"SEADRAGON_AGING_PER_MINUTE": str(args.aging)}
    affinity = {
        "SEADRAGON_FAIR_SHARE": "0.5",
        "SEADRAGON_MODEL_AFFINITY": str(args.affinity),
        "SEADRAGON_AFFINITY_MAX_DELAY": str(args.max_delay),
    }
    return {
        "a. arrival order": {"by_class": False, "env": {**off, "SEADRAGON_AGING_PER_MINUTE": "0"}},
        "b. priority + aging": {"by_class": True, "env": {**off, **aging}},
        "c. + fair share + affinity": {"by_class": True, "env": {**aging, **affinity}},
    }


async def replay(url: str, trace: list[Arrival], keys: dict[str, str]) -> list[Outcome]:
    """Send each arrival at its time (non-streaming chats) and collect status and queue wait."""
    loop = asyncio.get_running_loop()
    limits = httpx.Limits(max_connections=len(trace) + 10, max_keepalive_connections=len(trace) + 10)
    async with httpx.AsyncClient(base_url=url, timeout=3600, limits=limits) as client:
        start = loop.time()

        async def one(arrival: Arrival) -> Outcome:
            await asyncio.sleep(max(0.0, start + arrival.at - loop.time()))
            body = {"model": arrival.model, "messages": QUESTION, "stream": False}
            body["options"] = {"num_predict": TOKENS}
            response = await client.post("/api/chat", json=body, headers={"X-API-Key": keys[arrival.klass]})
            wait_ms = int(response.headers.get("X-Seadragon-Queue-Wait", "0"))
            error = None if response.status_code == 200 else response.text[:200]
            return Outcome(arrival, response.status_code, wait_ms / 1000, error)

        return list(await asyncio.gather(*(one(arrival) for arrival in trace)))


@dataclass
class Stack:
    """One configuration's simulator and gateway, and the key each class sends."""

    simulator: Service
    gateway: Service
    gateway_url: str
    keys: dict[str, str]

    @property
    def sim_url(self) -> str:
        """The simulator's base URL."""
        return f"http://127.0.0.1:{self.simulator.port}"

    def stop(self) -> None:
        """Stop both servers."""
        self.gateway.stop()
        self.simulator.stop()


def start_stack(workdir: Path, config: dict, args: argparse.Namespace) -> Stack:
    """A fresh simulator (one model in VRAM, ``--load-time`` swaps) and a one-slot gateway before it."""
    sim_config = SimulatorConfig(
        models=MODELS,
        tokens=TOKENS,
        token_delay=args.generation / TOKENS,
        num_parallel=0,
        max_loaded=1,
        load_time=args.load_time,
        log_limit=100,
    )
    simulator = start_simulator(workdir, sim_config)
    try:
        priorities = sorted({p for p, _ in CLASSES.values()}) if config["by_class"] else [5]
        setup = prepare_gateway(workdir, f"http://127.0.0.1:{simulator.port}", 1, priorities)
        setup.env.update(config["env"])
        gateway = start_gateway(workdir, setup)
    except BaseException:
        simulator.stop()
        raise
    keys = {
        name: setup.keys[priority if config["by_class"] else 5] for name, (priority, _) in CLASSES.items()
    }
    return Stack(simulator, gateway, f"http://127.0.0.1:{setup.port}", keys)


def measure(stack: Stack, trace: list[Arrival]) -> dict:
    """Replay the trace on one stack: swaps, failures and waits per class."""
    outcomes = asyncio.run(replay(stack.gateway_url, trace, stack.keys))
    loads = httpx.get(f"{stack.sim_url}/_sim/stats", timeout=10).json()["vram"]["loads"]
    return {
        "swaps": loads,
        "failed": sum(1 for o in outcomes if o.status != 200),
        "errors": sorted({f"{o.status} {o.error}" for o in outcomes if o.status != 200}),
        "waits": waits_by_class(outcomes),
    }


def goals(results: dict[str, dict], args: argparse.Namespace) -> list[tuple[str, bool]]:
    """The issue's goals for the affinity run against arrival order."""
    fifo, affine = results["a. arrival order"], results["c. + fair share + affinity"]
    bound = args.max_delay + args.generation + args.load_time
    worst = max(w["max"] for w in affine["waits"].values())
    fifo_worst = max(w["max"] for w in fifo["waits"].values())
    return [
        (f"swaps at least 50 % fewer than arrival order ({affine['swaps']} vs {fifo['swaps']})",
         affine["swaps"] <= fifo["swaps"] / 2),
        (f"max wait {worst:.1f} s <= AFFINITY_MAX_DELAY + one service time ({bound:.1f} s)", worst <= bound),
        (f"no class starved: all answered, every max wait <= arrival order's worst ({fifo_worst:.1f} s)",
         affine["failed"] == 0 and worst <= fifo_worst),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the three configurations, print the table and the goals; exit 1 if a goal is missed."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--generation", type=float, default=0.5, help="seconds per generation")
    parser.add_argument("--load-time", type=float, default=2.0, help="seconds to swap a model in")
    parser.add_argument("--loads", default="0.8,1.2", help="arrival rates, fractions of capacity")
    parser.add_argument(
        "--capacity",
        choices=("no-swap", "arrival-order"),
        default="no-swap",
        help="what the load factors are fractions of: what the slot serves when it never swaps "
        "(generation only: the GPU's own rate), or what it serves in arrival order (generation + "
        "expected swap)",
    )
    parser.add_argument("--aging", type=float, default=6.0, help="AGING_PER_MINUTE for b and c")
    parser.add_argument("--affinity", type=float, default=2.0, help="MODEL_AFFINITY for c")
    parser.add_argument(
        "--max-delay", type=float, default=60.0, help="AFFINITY_MAX_DELAY for c (the product's default)"
    )
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--only", default="", help="comma list of configuration letters (a,b,c)")
    args = parser.parse_args(argv)
    low, high = (float(part) for part in args.loads.split(","))
    swap_s = args.load_time if args.capacity == "arrival-order" else 0.0
    capacity = 1 / service_s(args.generation, swap_s)
    trace = make_trace(args.requests, capacity, (low, high), args.seed)
    chosen = {letter.strip() for letter in args.only.split(",") if letter.strip()}
    runs = {name: config for name, config in configurations(args).items() if not chosen or name[0] in chosen}
    stacks: dict[str, Stack] = {}
    with tempfile.TemporaryDirectory(prefix="seadragon-trace-") as workdir:
        try:
            for name, config in runs.items():  # one after another: migrations share Alembic's globals
                stacks[name] = start_stack(Path(workdir), config, args)
            with ThreadPoolExecutor(max_workers=len(stacks) or 1) as pool:
                futures = {name: pool.submit(measure, stack, trace) for name, stack in stacks.items()}
                results = {name: future.result() for name, future in futures.items()}
        finally:
            for stack in stacks.values():
                stack.stop()
    print(
        f"{args.requests} requests, {len(MODELS)} models, 1 slot, {args.generation:g} s generations, "
        f"{args.load_time:g} s swaps; capacity ({args.capacity}) {capacity:.2f} req/s; arrivals at "
        f"{low:.0%} then {high:.0%} of it (trace {trace[-1].at:.0f} s)\n"
    )
    print(table(results, args.load_time))
    print(
        f"\nreference: an offline replay serving the loaded model's requests first, priorities ignored, "
        f"swaps {greedy_swaps(trace, args.generation, args.load_time)} times"
    )
    for name, result in results.items():
        for error in result["errors"]:
            print(f"{name} failed: {error}")
    if len(results) < 3:
        return 0
    checks = goals(results, args)
    print()
    for text, met in checks:
        print(f"- [{'x' if met else ' '}] {text}")
    return 0 if all(met for _, met in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
