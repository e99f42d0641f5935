"""``--profile DIR``: sample the gateway with py-spy during each scenario and summarise where it spends CPU.

py-spy is not a requirement of the project: ``.venv/bin/pip install py-spy``.
Each scenario leaves ``DIR/<id>.folded`` (collapsed stacks, for any flame-graph
tool, e.g. ``py-spy``'s own speedscope export or ``flamegraph.pl``) and
``DIR/<id>-top.txt`` (the functions with the most samples).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench.procs import thread_cpu

SAMPLE_RATE = 200  # per second; --nonblocking keeps the gateway running while it is sampled
TOP = 25


def py_spy() -> str | None:
    """The py-spy executable next to this Python, or on PATH."""
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


class Profile:
    """py-spy recording one process for the length of a ``with`` block."""

    def __init__(self, pid: int, directory: Path, name: str) -> None:
        self.pid, self.name = pid, name
        self.folded = directory / f"{name}.folded"
        self.summary = directory / f"{name}-top.txt"
        self.process: subprocess.Popen | None = None
        self.threads_before: dict[int, tuple[str, float]] = {}

    def __enter__(self) -> Profile:
        executable = py_spy()
        if executable is None:
            raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")
        self.folded.parent.mkdir(parents=True, exist_ok=True)
        self.threads_before = thread_cpu(self.pid)
        self.process = subprocess.Popen(
            [executable, "record", "--pid", str(self.pid), "--rate", str(SAMPLE_RATE), "--nonblocking"]
            + ["--format", "raw", "--output", str(self.folded)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        threads = _thread_lines(self.threads_before, thread_cpu(self.pid))
        self.process.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        if self.folded.exists():
            self.summary.write_text(threads + summarise(self.folded))


def _thread_lines(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> str:
    # Measured CPU per thread: a check on the samples, whose idle detection can count
    # a thread that waits (e.g. aiosqlite's worker in queue.get) as busy.
    used = sorted(
        ((cpu - before.get(tid, (name, 0.0))[1], tid, name) for tid, (name, cpu) in after.items()),
        reverse=True,
    )
    lines = [f"{seconds:8.2f} s  thread {tid} ({name})" for seconds, tid, name in used if seconds > 0]
    return "CPU by thread during the scenario (/proc/<pid>/task):\n" + "\n".join(lines or ["none"]) + "\n\n"


def summarise(folded: Path, top: int = TOP) -> str:
    """The functions holding the most samples: on top of the stack (self) and anywhere in it (inclusive)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in folded.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
    if not total:
        return "no samples\n"
    parts = [f"{total} samples\n\nself (on top of the stack):"]
    parts += [f"{100 * n / total:6.1f} %  {frame}" for frame, n in own.most_common(top)]
    parts += ["", "inclusive (anywhere in the stack):"]
    parts += [f"{100 * n / total:6.1f} %  {frame}" for frame, n in inclusive.most_common(top)]
    return "\n".join(parts) + "\n"
