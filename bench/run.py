"""Run the benchmark: each scenario straight against the simulator, then through the gateway; print one table.

    .venv/bin/python bench/run.py [--quick] [--only S1,S3] [--output PATH] [--profile DIR]

Exit status: 0 every budget met, 1 a budget missed, 2 the harness itself failed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: import from the repository root, not from bench/.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.procs import raise_nofile  # noqa: E402
from bench.profile import Profile  # noqa: E402
from bench.queue_e2e import Q1_E2E  # noqa: E402
from bench.queue_inprocess import queue_inprocess_rows  # noqa: E402
from bench.report import Row, failures, table  # noqa: E402
from bench.scenarios import SCENARIOS, Scenario, Stack  # noqa: E402
from bench.sizes import FULL, QUICK, Sizes  # noqa: E402
from bench.stack import ROOT, Target, prepare_gateway, start_gateway, start_simulator  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "latest.md"
ALL = (*SCENARIOS, Q1_E2E)
OPEN_FILES = 65536  # S5 and Q1 hold thousands of sockets in the client and in the gateway


def run_scenario(
    scenario: Scenario, sizes: Sizes, workdir: Path, profile_dir: Path | None = None
) -> list[Row]:
    """Start a fresh simulator and gateway, run one scenario on both, stop them."""
    simulator = start_simulator(workdir, scenario.sim(sizes))
    try:
        setup = prepare_gateway(
            workdir, f"http://127.0.0.1:{simulator.port}", scenario.slots, scenario.priorities
        )
        gateway = start_gateway(workdir, setup)
        try:
            headers = {"X-API-Key": setup.keys[scenario.priorities[0]]}
            stack = Stack(
                direct=Target("direct", simulator.port, simulator.pid, headers),
                gateway=Target("gateway", gateway.port, gateway.pid, headers),
                keys=setup.keys,
                admin_token=setup.admin_token,
            )
            with Profile(gateway.pid, profile_dir, scenario.id) if profile_dir else contextlib.nullcontext():
                rows = scenario.run(stack, sizes)
            for service in (simulator, gateway):
                if not service.alive():
                    rows.append(
                        Row(scenario.id, f"{service.name} died during the run", None, None, "alive", False)
                    )
            return rows
        finally:
            gateway.stop()
    finally:
        simulator.stop()


def machine_note(load_before: tuple[float, float, float]) -> str:
    """Where and how the figures were taken, since they only mean something with it."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    load_after = os.getloadavg()
    return (
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')} · commit {commit or '?'} · {os.cpu_count()} CPUs · "
        f"Python {platform.python_version()} · load average before {load_before[0]:.2f}, "
        f"after {load_after[0]:.2f} (1 min)"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test, not a measurement")
    parser.add_argument("--only", default="", help="comma list of scenario ids, e.g. S1,S3,Q1")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"Markdown file (default {RESULTS})")
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="sample the gateway with py-spy into DIR (see profile.py)"
    )
    args = parser.parse_args(argv)
    known = {s.id for s in ALL}
    args.only = [s.strip().upper() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(args.only) - known)
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the selected scenarios, print and save the table; the exit status says how it went."""
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    selected = [s for s in ALL if not args.only or s.id in args.only]
    limit = raise_nofile(OPEN_FILES)
    load_before = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="seadragon-bench-"))
    rows: list[Row] = []
    broken = False
    try:
        for scenario in selected:
            print(f"· {scenario.id}: {scenario.title}", flush=True)
            try:
                rows += run_scenario(scenario, sizes, workdir, args.profile)
            except Exception as exc:  # one broken scenario must not hide the others' figures
                broken = True
                traceback.print_exc(file=sys.stderr)
                message = f"harness error: {type(exc).__name__}: {exc}"[:200]
                rows.append(Row(scenario.id, message, None, None, "runs", False))
            if scenario.id == "Q1":
                rows += queue_inprocess_rows(quick=args.quick)
    finally:
        if broken:
            print(f"server logs kept in {workdir}", file=sys.stderr, flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    title = "quick smoke run (tiny sizes: not a measurement)" if args.quick else "full run"
    text = (
        f"# Seadragon benchmark — {title}\n\n{machine_note(load_before)} · open-file limit {limit}\n\n"
        f"{table(rows)}\n\nratio = gateway ÷ direct (the simulator alone).\n"
    )
    print("\n" + text, flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"written to {args.output}", flush=True)
    if args.profile:
        print(f"gateway profiles (py-spy) in {args.profile}: <id>.folded, <id>-top.txt", flush=True)
    if broken:
        return 2
    return 1 if failures(rows) else 0


if __name__ == "__main__":
    sys.exit(main())
