"""Child processes for the benchmark, and what /proc says about them (memory, CPU)."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from common.door_parts import raise_descriptor_limit

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STOP_GRACE_S = 10


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def raise_nofile(wanted: int) -> int:
    """Raise this process's open-file limit towards ``wanted`` (children inherit it); return it."""
    return raise_descriptor_limit(wanted)[1]


class Service:
    """One server in a subprocess, its output in a log file."""

    def __init__(
        self, name: str, argv: list[str], *, port: int, env: dict[str, str], cwd: Path, log_path: Path
    ) -> None:
        self.name, self.argv, self.port = name, argv, port
        self.env, self.cwd, self.log_path = env, cwd, log_path
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.process is not None, f"{self.name} is not started"
        return self.process.pid

    def start(self, ready_url: str, timeout: float = 30.0) -> Service:
        """Start the process and wait until ``ready_url`` answers 200."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(ready_url, timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer {ready_url} within {timeout:g} s:\n{self.output()}")

    def output(self, limit: int = 4000) -> str:
        """The end of what the server printed."""
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        """True while the process runs."""
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it is still there after a grace period."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_GRACE_S)


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (uvicorn workers, if any, are children)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants (VmRSS), MiB."""
    return rss_of(process_tree(pid))


def rss_of(pids: list[int]) -> float:
    """Resident memory of exactly these processes (VmRSS), MiB; cheap enough to sample often."""
    return sum(_status_kib(p, "VmRSS") for p in pids) / 1024


def hwm_mib(pid: int) -> float:
    """Peak resident memory over each process's life (VmHWM), summed, MiB."""
    return sum(_status_kib(p, "VmHWM") for p in process_tree(pid)) / 1024


def _stat_cpu(path: str) -> tuple[str, float]:
    stat = Path(path).read_text()
    fields = stat.rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of stat(5); the name is between the parentheses.
    return stat[stat.index("(") + 1 : stat.rindex(")")], (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """CPU seconds so far of each thread of ``pid``, with the thread's name."""
    threads = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            threads[int(tid)] = _stat_cpu(f"/proc/{pid}/task/{tid}/stat")
        except OSError:
            continue
    return threads


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` and its descendants."""
    total = 0.0
    for p in process_tree(pid):
        try:
            total += _stat_cpu(f"/proc/{p}/stat")[1]
        except OSError:
            continue
    return total


class PeakSampler:
    """Samples a value in a background thread while a scenario runs and keeps the peak."""

    def __init__(self, read: Callable[[], float], interval: float = 0.05) -> None:
        self.read, self.interval = read, interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.read())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakSampler:
        self.peak = self.read()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.peak = max(self.peak, self.read())
