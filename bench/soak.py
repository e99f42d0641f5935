"""Soak: the gateway at about 80 % load for a long while, its memory and descriptors sampled.

The real gateway (``python asgi.py``) in front of the simulator, 2 slots, requests arriving
at random (Poisson) at ``--load`` of what the slots can serve, from several API keys; mixed
streamed and whole answers. Every ``--interval`` seconds the gateway's RSS and open file
descriptors are sampled and printed as a table. After the warm-up (the first fifth of the
run), neither may grow by ``--max-growth`` (5 %) or more: exit status 1 if one does.

    .venv/bin/python bench/soak.py                # 30 minutes
    .venv/bin/python bench/soak.py --minutes 3    # a shorter figure
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.procs import rss_mib
from bench.stack import HOST, gateway_on_simulator

SLOTS = 2
TOKENS = 10
TOKEN_DELAY_S = 0.01
HOLD_S = TOKENS * TOKEN_DELAY_S  # how long one request holds a slot, about
WARM_UP_SHARE = 0.2


@dataclass
class Sample:
    """One measurement of the gateway process."""

    at_s: float
    rss_mib: float
    fds: int
    served: int
    failed: int


def open_fds(pid: int) -> int:
    """Open file descriptors of a process."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def growth(samples: list[Sample], field: str) -> float:
    """Relative growth of ``field`` from the end of the warm-up to the end of the run (0.05 = 5 %)."""
    start = samples[min(int(len(samples) * WARM_UP_SHARE), len(samples) - 1)]
    base = getattr(start, field)
    return (getattr(samples[-1], field) - base) / base if base else 0.0


async def load(url: str, keys: list[str], rate: float, until: float, counts: dict[str, int]) -> None:
    """Poisson arrivals at ``rate`` per second until the monotonic time ``until``."""
    rng = random.Random(1)
    headers = {"X-Sim-Tokens": str(TOKENS), "X-Sim-Delay": str(TOKEN_DELAY_S)}
    pending: set[asyncio.Task] = set()

    async def one(client: httpx.AsyncClient) -> None:
        body = {
            "model": "llama3.2",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": rng.random() < 0.7,
        }
        try:
            answer = await client.post(
                "/api/chat", json=body, headers={**headers, "X-API-Key": rng.choice(keys)}
            )
            counts["served" if answer.status_code == 200 else "failed"] += 1
        except httpx.TransportError:
            counts["failed"] += 1

    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        while time.monotonic() < until:
            task = asyncio.ensure_future(one(client))
            pending.add(task)
            task.add_done_callback(pending.discard)
            await asyncio.sleep(rng.expovariate(rate))
        await asyncio.gather(*pending)


def soak(workdir: Path, minutes: float, interval: float, share: float) -> list[Sample]:
    """Run the load for ``minutes`` and sample every ``interval`` seconds."""
    with gateway_on_simulator(workdir, SLOTS, (1, 2, 3)) as (setup, gateway):
        counts = {"served": 0, "failed": 0}
        started = time.monotonic()
        until = started + minutes * 60
        samples: list[Sample] = []

        def sample() -> None:
            at = time.monotonic() - started
            rss, fds = rss_mib(gateway.pid), open_fds(gateway.pid)
            samples.append(Sample(at, rss, fds, counts["served"], counts["failed"]))

        async def run() -> None:
            url = f"http://{HOST}:{setup.port}"
            rate = share * SLOTS / HOLD_S
            loader = asyncio.ensure_future(load(url, list(setup.keys.values()), rate, until, counts))
            sample()
            while not loader.done():
                await asyncio.wait({loader}, timeout=interval)
                sample()
            await loader

        asyncio.run(run())
        return samples


def main(argv: list[str] | None = None) -> int:
    """Soak, print the samples, and exit 1 if memory or descriptors grew after the warm-up."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--load", type=float, default=0.8, help="share of the slots' capacity offered")
    parser.add_argument("--max-growth", type=float, default=0.05)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="seadragon-soak-") as tmp:
        samples = soak(Path(tmp), args.minutes, args.interval, args.load)
    print("| t (s) | RSS (MiB) | open fds | served | failed |")
    print("|---|---|---|---|---|")
    for s in samples:
        print(f"| {s.at_s:.0f} | {s.rss_mib:.1f} | {s.fds} | {s.served} | {s.failed} |")
    rss, fds = growth(samples, "rss_mib"), growth(samples, "fds")
    print(f"\nafter warm-up: RSS {rss:+.1%}, open fds {fds:+.1%} (limit {args.max_growth:.0%})")
    return 1 if max(rss, fds) >= args.max_growth or samples[-1].failed else 0


if __name__ == "__main__":
    sys.exit(main())
