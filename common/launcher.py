"""The run command's work: find or start an Ollama, prepare the database, serve."""

from __future__ import annotations

import atexit
import gc
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from common.serving import die_with_parent, run_gracefully, stop_child
from common.settings import ConfigError, Settings

ROOT = Path(__file__).resolve().parent.parent
SIMULATOR_PORT = 11435
# Objects allocated between young-generation collections (CPython's default is 700).
GC_GEN0_THRESHOLD = 10_000
BANNER = "=" * 72


def _answers(url: str, timeout: float = 0.5) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout):
            return True
    except OSError:
        return False


def tune_gc() -> None:
    """Make the cyclic garbage collector cheap for a server that allocates per request.

    Measured at 64 connections: CPython's defaults spent ~150 µs of CPU per
    request in the collector (its full collections re-scan every object the
    imports and the app made). Those are frozen out of its reach, and the young
    generation is collected every 10,000 allocations instead of every 700:
    ~20 µs per request. Memory held by cycles waiting for collection stays bounded.
    """
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def prepare_database_in_child() -> tuple[str, str | None] | None:
    """Run the migrations and first-run setup in a short-lived child process.

    Alembic and the migration scripts then never occupy the server's memory.
    Returns what :func:`common.bootstrap.prepare_database` returned.
    """
    done = subprocess.run(
        [sys.executable, "-m", "common.bootstrap"], cwd=ROOT, env=os.environ, capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        sys.exit(f"seadragon: preparing the database failed (exit status {done.returncode})")
    created = json.loads(done.stdout.strip().splitlines()[-1])["created"]
    return None if created is None else (created[0], created[1])


def _free_port(preferred: int) -> int:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_simulator() -> str:
    """Start the bundled Ollama simulator as a child process; return its URL."""
    port = _free_port(SIMULATOR_PORT)
    process = subprocess.Popen(
        [sys.executable, "-m", "simulator", "--host", "127.0.0.1", "--port", str(port)],
        preexec_fn=die_with_parent,  # noqa: PLW1509 - only prctl, no locks: safe before exec
    )
    atexit.register(stop_child, process)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while not _answers(url):
        if process.poll() is not None or time.monotonic() > deadline:
            sys.exit("seadragon: the bundled Ollama simulator did not start")
        time.sleep(0.1)
    return url


def launch(build_app: Callable[[Settings], object]) -> None:
    """Prepare everything and serve the app until interrupted."""
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        sys.exit(f"seadragon: configuration error: {exc}")
    if not settings.ollama_urls_set and not _answers(settings.backends[0].url):
        url = start_simulator()
        os.environ["SEADRAGON_OLLAMA_URLS"] = f"{url}={settings.max_concurrent}"
        settings = Settings.from_env()
        print(
            f"{BANNER}\n  No Ollama answers on 127.0.0.1:11434 and SEADRAGON_OLLAMA_URLS is unset.\n"
            f"  Started the bundled Ollama SIMULATOR at {url}: answers are FAKE tokens.\n"
            f"  Set SEADRAGON_OLLAMA_URLS to use a real Ollama.\n{BANNER}",
            flush=True,
        )
    created = prepare_database_in_child()
    if created is not None:
        username, password = created
        if password is not None:
            print(
                f"{BANNER}\n  Created the admin account {username!r} with the password:\n\n"
                f"      {password}\n\n  It is shown only this once. Change it in the admin panel.\n{BANNER}",
                flush=True,
            )
        else:
            print(f"seadragon: created the admin account {username!r}", flush=True)
    app = build_app(settings)
    tune_gc()
    protocol = prepare_door(settings)
    print(
        f"seadragon: serving on http://{settings.host}:{settings.port} "
        f"(admin panel at /admin/, Ollama API at /api/, OpenAI API at /v1/)",
        flush=True,
    )
    run_gracefully(
        app,
        grace=settings.shutdown_grace,  # docs/contract.md §10
        host=settings.host,
        port=settings.port,
        proxy_headers=False,  # client IPs are resolved by common.network with TRUSTED_PROXIES
        server_header=False,
        log_level="info",
        access_log=False,
        http=protocol,
        timeout_keep_alive=settings.keepalive_timeout,
        backlog=settings.listen_backlog,  # the kernel caps it at net.core.somaxconn
    )


def prepare_door(settings: Settings) -> type:
    """The connection limits of ``common.door``, with file descriptors enough for them."""
    from common.door import DoorLimits, door_protocol
    from common.door_parts import descriptors_needed, raise_descriptor_limit

    needed = descriptors_needed(settings.max_connections)
    before, now, hard = raise_descriptor_limit(needed)
    if now != before:
        print(f"seadragon: open-file limit raised from {before} to {now} (hard limit {hard})", flush=True)
    if now < needed:
        print(
            f"seadragon: WARNING: the open-file limit {now} is below the {needed} that "
            f"SEADRAGON_MAX_CONNECTIONS={settings.max_connections} may need (hard limit {hard})",
            flush=True,
        )
    limits = DoorLimits(
        head_timeout=settings.head_timeout,
        max_head_size=settings.max_head_size,
        max_connections=settings.max_connections,
        max_pending_per_ip=settings.max_pending_per_ip,
        pending_grace=settings.pending_grace,
        trusted_proxies=settings.trusted_proxies,
        max_idle_per_ip=settings.max_idle_per_ip,
        body_timeout=settings.body_timeout,
    )
    return door_protocol(limits)
