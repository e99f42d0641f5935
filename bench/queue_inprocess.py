"""Q1 in process: the scheduler's own benchmark (``bench/bench_queue.py``), folded into the table.

``bench_queue.py`` belongs to the scheduler. The runner takes its figures, in
this order of preference: a function ``rows(quick: bool) -> list[Row]``; else
the Markdown table lines it prints in the runner's seven columns (``| id |
metric | direct | gateway | ratio | budget | result |``); else each line it
prints, as an information row.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from bench.report import Row
from bench.stack import ROOT

SCRIPT = ROOT / "bench" / "bench_queue.py"
TIMEOUT_S = 900


def _from_function(quick: bool) -> list[Row] | None:
    if "def rows(" not in SCRIPT.read_text():
        return None
    spec = importlib.util.spec_from_file_location("bench.bench_queue", SCRIPT)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = getattr(module, "rows", None)
    return list(rows(quick)) if callable(rows) else None


def parse_line(line: str) -> Row | None:
    """A row from one ``| id | metric | direct | gateway | ratio | budget | result |`` line."""
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) != 7 or not cells[0] or cells[0] == "id" or set(cells[0]) <= {"-", ":"}:
        return None
    result = cells[6].strip("*").lower()
    passed = True if result == "pass" else False if result == "fail" else None
    return Row(cells[0], cells[1], cells[2] or None, cells[3] or None, cells[5], passed)


def _from_output(quick: bool) -> list[Row]:
    argv = [sys.executable, str(SCRIPT)]
    if quick and "--quick" in SCRIPT.read_text():
        argv.append("--quick")
    try:
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return [Row("Q1", f"bench_queue.py did not finish in {TIMEOUT_S} s", None, None, "finishes", False)]
    lines = [ln for ln in done.stdout.splitlines() if ln.strip()]
    rows = [row for row in map(parse_line, lines) if row is not None]
    if not rows:
        rows = [Row("Q1", f"bench_queue.py: {ln.strip()}"[:160], None, None) for ln in lines[-20:]]
    if done.returncode != 0 and not any(r.passed is False for r in rows):
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        rows.append(
            Row("Q1", f"bench_queue.py exited {done.returncode}: {tail}"[:200], None, None, "exit 0", False)
        )
    return rows


def queue_inprocess_rows(quick: bool) -> list[Row]:
    """The in-process queue figures, or one row saying why there are none."""
    if not SCRIPT.exists():
        return [Row("Q1", "in-process queue bench: bench/bench_queue.py not there yet", None, None)]
    try:
        rows = _from_function(quick)
    except Exception as exc:  # its import failing must not cost the rest of the table
        return [
            Row("Q1", f"bench_queue.py failed: {type(exc).__name__}: {exc}"[:200], None, None, "runs", False)
        ]
    return rows if rows is not None else _from_output(quick)
