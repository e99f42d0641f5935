"""The C load generators: ``wrk`` (throughput, latency percentiles), ``h2load --h1`` (time to first byte)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
WRK = shutil.which("wrk") or "/usr/bin/wrk"
H2LOAD = shutil.which("h2load") or "/usr/bin/h2load"
REQUEST_TIMEOUT_S = 10  # per request; a healthy small request takes milliseconds


class LoadgenError(RuntimeError):
    """A load generator failed or printed something we cannot read."""


@dataclass
class WrkResult:
    """wrk's summary: counts, errors, latency percentiles (milliseconds)."""

    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float

    @property
    def rps(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0


@dataclass
class H2loadResult:
    """h2load's summary: request counts and time to first byte (milliseconds)."""

    requests: int
    succeeded: int  # 2xx responses
    failed: int  # everything else, errors and timeouts included
    ttfb_mean_ms: float  # connect + request + first response byte
    ttfb_max_ms: float
    p50_ms: float  # whole request, from h2load's per-request log


def _body_file(directory: str, body: dict) -> str:
    path = os.path.join(directory, "body.json")
    Path(path).write_text(json.dumps(body, separators=(",", ":")))
    return path


def run_wrk(
    url: str, body: dict, headers: dict[str, str], *, connections: int, threads: int, seconds: float
) -> WrkResult:
    """POST ``body`` to ``url`` for ``seconds`` over ``connections`` keep-alive connections."""
    threads = max(1, min(threads, connections))
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        env = {
            **os.environ,
            "BENCH_BODY_FILE": _body_file(tmp, body),
            "BENCH_HEADERS": "\n".join(f"{k}: {v}" for k, v in headers.items()),
        }
        argv = [
            WRK,
            f"-c{connections}",
            f"-t{threads}",
            f"-d{max(1, round(seconds))}s",
            f"--timeout={REQUEST_TIMEOUT_S}s",
            "-s",
            str(HERE / "post.lua"),
            url,
        ]
        done = _run(argv, env, timeout=seconds + REQUEST_TIMEOUT_S + 30)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise LoadgenError(f"wrk printed no summary:\n{done.stdout}\n{done.stderr}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    errors = sum(
        int(data[k]) for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
    )
    return WrkResult(
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        errors=errors,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        mean_ms=data["mean_us"] / 1000,
    )


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}
_DURATION = r"([\d.]+)(us|ms|s)"


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS[unit]


def run_h2load(
    url: str, body: dict, headers: dict[str, str], *, requests: int, period_ms: float
) -> H2loadResult:
    """POST ``body`` ``requests`` times, each on a new HTTP/1.1 connection opened every ``period_ms``.

    h2load times the first byte per *connection*, so one request per
    connection makes its figure a per-request time to first byte (connect included).
    """
    with tempfile.TemporaryDirectory(prefix="bench-h2load-") as tmp:
        log = os.path.join(tmp, "requests.tsv")
        argv = [H2LOAD, "--h1", f"-n{requests}", f"-c{requests}", "-r1", f"--rate-period={period_ms:g}ms"]
        argv += [f"-d{_body_file(tmp, body)}", "-H", "content-type: application/json", f"--log-file={log}"]
        for name, value in headers.items():
            argv += ["-H", f"{name.lower()}: {value}"]
        argv.append(url)
        done = _run(argv, dict(os.environ), timeout=requests * (period_ms / 1000 + 0.05) + 60)
        times = sorted(int(row.split("\t")[2]) for row in Path(log).read_text().splitlines() if row)
    counts = re.search(r"requests: (\d+) total, \d+ started, (\d+) done", done.stdout)
    ok = re.search(r"status codes: (\d+) 2xx", done.stdout)
    ttfb = re.search(rf"time to 1st byte:\s+{_DURATION}\s+{_DURATION}\s+{_DURATION}", done.stdout)
    if not counts or not ok or not ttfb or not times:
        raise LoadgenError(f"h2load printed no summary:\n{done.stdout}\n{done.stderr}")
    return H2loadResult(
        requests=int(counts.group(1)),
        succeeded=int(ok.group(1)),
        failed=int(counts.group(1)) - int(ok.group(1)),
        ttfb_mean_ms=_ms(ttfb.group(5), ttfb.group(6)),
        ttfb_max_ms=_ms(ttfb.group(3), ttfb.group(4)),
        p50_ms=times[len(times) // 2] / 1000,
    )


def _run(argv: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise LoadgenError(f"{Path(argv[0]).name} did not finish in {timeout:.0f} s") from exc
    if done.returncode != 0:
        raise LoadgenError(f"{Path(argv[0]).name} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done
