"""GPU share of a heavy and a light identity through the real gateway, with and without fair share by time.

docs/contract.md §13. Two API keys at the same priority share one slot on the bundled simulator:
``long`` keeps ``--backlog`` requests of ``--long`` seconds in flight, ``short`` keeps as many of
``--short`` seconds, for ``--minutes`` of simulated traffic. Each configuration runs on its own
simulator and gateway (side by side: waiting costs no CPU):

  FAIR_SHARE_SECONDS=10   fair share counts each identity's GPU time (the product's default)
  FAIR_SHARE_SECONDS=0    fair share counts requests only (turns alternate: ≈ 20/21 of the GPU
                          goes to the long identity)

Time is scaled by ``--scale``: every simulated second lasts ``1/scale`` real seconds, and so do
the generations (the simulator's first-token delay), FAIR_SHARE_SECONDS and FAIR_SHARE_WINDOW,
while AGING_PER_MINUTE is multiplied by the scale; the figures are printed back in simulated
seconds. GPU share is each identity's slot time (dispatch to last byte, as the gateway's
``gpu_ms``, here measured by the client: answer time minus ``X-Seadragon-Queue-Wait``) within the
traffic window, while both stay backlogged; waits are the gateway's ``X-Seadragon-Queue-Wait``.

    .venv/bin/python -m bench.gpu_share                       # 10 simulated minutes, scale 10, 3 runs
    .venv/bin/python -m bench.gpu_share --minutes 1 --runs 1  # quick
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.procs import Service
from bench.stack import prepare_gateway, sim_config, start_gateway, start_simulator
from bench.trace_model import percentile
from common.db import make_sessionmaker, make_sync_engine
from common.models import APIKey
from common.security import display_prefix, hash_secret, new_api_key
from common.settings import Settings

PRIORITY = 5
IDENTITIES = ("long", "short")
QUESTION = [{"role": "user", "content": "Tell me about the sea."}]


@dataclass(frozen=True)
class Done:
    """One answered request, in real seconds from the start of the traffic."""

    who: str
    sent: float
    dispatched: float  # sent + the gateway's queue wait
    ended: float
    status: int


def second_key(setup) -> str:
    """Another key at the same priority as the one ``prepare_gateway`` made."""
    settings = Settings.from_env(setup.env)
    engine = make_sync_engine(settings.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            key = new_api_key()
            session.add(
                APIKey(
                    name="bench short",
                    key_hash=hash_secret(key),
                    prefix=display_prefix(key),
                    priority=PRIORITY,
                )
            )
            session.commit()
    finally:
        engine.dispose()
    return key


async def traffic(url: str, keys: dict[str, str], args: argparse.Namespace) -> list[Done]:
    """Both identities keep ``--backlog`` requests in flight for the window; every answer is kept."""
    window = args.minutes * 60 / args.scale
    lengths = {"long": args.long / args.scale, "short": args.short / args.scale}
    loop = asyncio.get_running_loop()
    done: list[Done] = []
    limits = httpx.Limits(max_connections=4 * args.backlog + 10)
    async with httpx.AsyncClient(base_url=url, timeout=3600, limits=limits) as client:
        start = loop.time()

        async def worker(who: str) -> None:
            headers = {
                "X-API-Key": keys[who],
                "X-Sim-First-Token-Delay": f"{lengths[who]:.6f}",  # the generation's length
                "X-Sim-Tokens": "1",
            }
            body = {"model": "llama3.2", "messages": QUESTION, "stream": False}
            while loop.time() - start < window:
                sent = loop.time() - start
                response = await client.post("/api/chat", json=body, headers=headers)
                ended = loop.time() - start
                wait = int(response.headers.get("X-Seadragon-Queue-Wait", "0")) / 1000
                done.append(Done(who, sent, sent + wait, ended, response.status_code))

        await asyncio.gather(*(worker(who) for who in IDENTITIES for _ in range(args.backlog)))
    return done


def summary(done: list[Done], args: argparse.Namespace) -> dict:
    """GPU share within the window (both backlogged throughout) and waits, in simulated seconds."""
    window = args.minutes * 60 / args.scale
    gpu = {who: 0.0 for who in IDENTITIES}
    for item in done:
        gpu[item.who] += max(0.0, min(item.ended, window) - min(item.dispatched, window))
    total = sum(gpu.values()) or 1.0
    out = {"failed": sum(item.status != 200 for item in done), "busy": total / window}
    for who in IDENTITIES:
        waits = sorted((d.dispatched - d.sent) * args.scale for d in done if d.who == who and d.sent < window)
        out[who] = {
            "share": gpu[who] / total,
            "requests": len(waits),
            "p50": percentile(waits, 0.5),
            "p95": percentile(waits, 0.95),
        }
    return out


@dataclass
class Stack:
    """One configuration's simulator and gateway, and the two identities' keys."""

    simulator: Service
    gateway: Service
    url: str
    keys: dict[str, str]

    def stop(self) -> None:
        """Stop both servers."""
        self.gateway.stop()
        self.simulator.stop()


def start_stack(workdir: Path, fair_seconds: float, args: argparse.Namespace) -> Stack:
    """A fresh simulator and a one-slot gateway before it, with ``FAIR_SHARE_SECONDS`` scaled."""
    simulator = start_simulator(workdir, sim_config())
    try:
        setup = prepare_gateway(workdir, f"http://127.0.0.1:{simulator.port}", 1, [PRIORITY])
        keys = {"long": setup.keys[PRIORITY], "short": second_key(setup)}
        setup.env.update(
            {
                "SEADRAGON_FAIR_SHARE": "0.5",
                "SEADRAGON_FAIR_SHARE_SECONDS": repr(fair_seconds / args.scale),
                "SEADRAGON_FAIR_SHARE_WINDOW": repr(args.window / args.scale),
                "SEADRAGON_AGING_PER_MINUTE": repr(0.1 * args.scale),
                "SEADRAGON_MODEL_AFFINITY": "0",
            }
        )
        gateway = start_gateway(workdir, setup)
    except BaseException:
        simulator.stop()
        raise
    return Stack(simulator, gateway, f"http://127.0.0.1:{setup.port}", keys)


def run_both(workdir: Path, args: argparse.Namespace) -> dict[float, dict]:
    """Both configurations side by side (prepared one after another: Alembic's globals are shared)."""
    stacks: dict[float, Stack] = {}
    try:
        for fair in (10.0, 0.0):
            stacks[fair] = start_stack(workdir, fair, args)
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = {
                fair: pool.submit(lambda s=stack: summary(asyncio.run(traffic(s.url, s.keys, args)), args))
                for fair, stack in stacks.items()
            }
            return {fair: future.result() for fair, future in futures.items()}
    finally:
        for stack in stacks.values():
            stack.stop()


def table(runs: list[dict[float, dict]], args: argparse.Namespace) -> str:
    """One line per run and configuration, then the mean."""
    lines = [
        "| run | FAIR_SHARE_SECONDS | GPU share long / short | requests long / short | "
        "wait p50 long / short (s) | wait p95 long / short (s) |",
        "|---|---|---|---|---|---|",
    ]
    for number, results in enumerate(runs, 1):
        for fair, r in results.items():
            lo, sh = r["long"], r["short"]
            lines.append(
                f"| {number} | {fair:g} | {lo['share']:.0%} / {sh['share']:.0%} | {lo['requests']} / "
                f"{sh['requests']} | {lo['p50']:.0f} / {sh['p50']:.0f} | {lo['p95']:.0f} / {sh['p95']:.0f} |"
            )
    return "\n".join(lines)


def goals(runs: list[dict[float, dict]]) -> list[tuple[str, bool]]:
    """The issue's goals, on the mean over the runs."""
    on = [r[10.0] for r in runs if 10.0 in r]
    off = [r[0.0] for r in runs if 0.0 in r]
    if not on or not off:
        return []
    share = statistics.mean(r["long"]["share"] for r in on)
    p95_on = statistics.mean(r["short"]["p95"] for r in on)
    p95_off = statistics.mean(r["short"]["p95"] for r in off)
    return [
        (f"GPU shares within 60/40 with FAIR_SHARE_SECONDS=10 (long {share:.0%})", 0.4 <= share <= 0.6),
        (
            f"short identity's p95 wait at least 3x lower ({p95_on:.0f} s vs {p95_off:.0f} s)",
            p95_on * 3 <= p95_off,
        ),
        ("every request answered", all(r["failed"] == 0 for r in on + off)),
    ]


def main(argv: list[str] | None = None) -> int:
    """Run both configurations ``--runs`` times, print the table and the goals; 1 if a goal is missed."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="simulated minutes of traffic")
    parser.add_argument("--scale", type=float, default=10.0, help="simulated seconds per real second")
    parser.add_argument("--long", type=float, default=20.0, help="simulated seconds per long generation")
    parser.add_argument("--short", type=float, default=1.0, help="simulated seconds per short generation")
    parser.add_argument("--backlog", type=int, default=4, help="requests each identity keeps in flight")
    parser.add_argument("--window", type=float, default=300.0, help="FAIR_SHARE_WINDOW, simulated seconds")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    runs: list[dict[float, dict]] = []
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="seadragon-gpu-share-") as workdir:
        for _ in range(args.runs):
            runs.append(run_both(Path(workdir), args))
    print(
        f"2 identities at priority {PRIORITY}, 1 slot, {args.long:g} s vs {args.short:g} s generations, "
        f"{args.backlog} in flight each, {args.minutes:g} simulated minutes at scale {args.scale:g} "
        f"({time.monotonic() - began:.0f} s real)\n"
    )
    print(table(runs, args))
    checks = goals(runs)
    print()
    for text, met in checks:
        print(f"- [{'x' if met else ' '}] {text}")
    return 0 if all(met for _, met in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
