"""Limits at the door (README "Limits at the door"), over raw sockets against ``python asgi.py``."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from common.door_parts import descriptors_needed
from tests.conftest import settings_env
from tests.live import LiveServer
from tests.proxy.door_sockets import OPEN, connect, read_all, read_response
from tests.proxy.live_gateway import (
    BODY_TIMEOUT,
    HEAD_TIMEOUT,
    KEEPALIVE_TIMEOUT,
    MAX_CONNECTIONS,
    MAX_HEAD,
    PENDING_GRACE,
    PENDING_PER_IP,
)

pytestmark = pytest.mark.costly  # a real `python asgi.py` and waits out its head and keep-alive timeouts


def test_a_partial_head_is_answered_408_and_closed_after_the_head_timeout(door_server):
    sock = connect(door_server)
    started = time.monotonic()
    sock.sendall(b"GET /api/tags HT")
    answer = read_all(sock, limit=HEAD_TIMEOUT + 10)
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert HEAD_TIMEOUT * 0.8 <= elapsed < HEAD_TIMEOUT + 5


def test_a_slow_head_cannot_extend_the_timeout_by_trickling_bytes(door_server):
    sock = connect(door_server)
    started = time.monotonic()
    for byte in b"GET /api/tags HTTP/1.1\r\nHost: x\r\n":
        try:
            sock.send(bytes([byte]))
        except OSError:
            break
        time.sleep(0.2)
        if time.monotonic() - started > HEAD_TIMEOUT + 5:
            break
    closed_at = time.monotonic() - started
    assert read_all(sock, limit=5).startswith(b"HTTP/1.1 408 ")
    assert closed_at < HEAD_TIMEOUT + 5


def test_a_silent_new_connection_is_closed_after_the_head_timeout(door_server):
    sock = connect(door_server)
    started = time.monotonic()
    assert read_all(sock, limit=HEAD_TIMEOUT + 10) == b""
    assert time.monotonic() - started < HEAD_TIMEOUT + 5


def test_an_idle_keep_alive_connection_lives_for_the_keepalive_timeout_then_closes(door_server):
    sock = connect(door_server)
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    sock.sendall(request)
    assert read_response(sock).startswith(b"HTTP/1.1 200 ")
    time.sleep(HEAD_TIMEOUT + 0.5)  # longer than the head timeout: idle is not a slow head
    sock.sendall(request)
    assert read_response(sock).startswith(b"HTTP/1.1 200 ")
    started = time.monotonic()
    assert read_all(sock, limit=KEEPALIVE_TIMEOUT + 10) == b""
    assert KEEPALIVE_TIMEOUT * 0.8 <= time.monotonic() - started < KEEPALIVE_TIMEOUT + 5


def test_a_head_over_the_limit_is_431_and_a_head_under_it_is_served(door_server):
    sock = connect(door_server)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (MAX_HEAD - 200) + b"\r\n\r\n")
    assert read_response(sock).startswith(b"HTTP/1.1 200 ")
    sock.close()
    sock = connect(door_server)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * MAX_HEAD + b"\r\n\r\n")
    answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert b'{"error": "request head too large"}' in answer


def test_a_huge_header_is_refused_without_being_read(door_server, door_key):
    sock = connect(door_server)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Huge: ")
    sock.settimeout(0.5)
    sent = 0
    started = time.monotonic()
    piece = b"a" * 65536
    try:
        while sent < 100 * 1024 * 1024 and time.monotonic() - started < 10:
            sent += sock.send(piece)
    except (TimeoutError, BlockingIOError, ConnectionResetError, BrokenPipeError):
        pass
    # The server stopped reading at the limit: far less than 100 MB went in.
    assert sent < 20 * 1024 * 1024
    assert read_all(sock).startswith(b"HTTP/1.1 431 ")
    answered = httpx.get(door_server.url + "/api/tags", headers={"X-API-Key": door_key}, timeout=5)
    assert answered.status_code == 200


def test_one_ip_may_hold_only_its_pending_connections(door_server, door_key):
    held = [connect(door_server, "127.0.0.2") for _ in range(PENDING_PER_IP)]
    time.sleep(PENDING_GRACE + 0.3)  # they have all gone the grace without a head
    refused = connect(door_server, "127.0.0.2")
    assert read_all(refused, limit=5).startswith(b"HTTP/1.1 429 ")
    # Another address is not affected, and a complete head frees the place at once.
    assert (
        httpx.get(door_server.url + "/api/tags", headers={"X-API-Key": door_key}, timeout=5).status_code
        == 200
    )
    held[0].sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(held[0]).startswith(b"HTTP/1.1 200 ")
    again = connect(door_server, "127.0.0.2")
    again.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(again).startswith(b"HTTP/1.1 200 ")


CHAT = {
    "model": "llama3.2:latest",
    "messages": [{"role": "user", "content": "hi"}],
    "stream": False,
    "options": {"num_predict": 4},
}


def test_300_hostile_sockets_do_not_keep_a_key_holder_out(door_server, door_key):
    """300 half-sent heads from 30 addresses against a cap of 60 connections and 5 pending per address."""
    hostile: list[socket.socket] = []
    with httpx.Client(base_url=door_server.url, headers={"X-API-Key": door_key}, timeout=10) as holder:
        assert holder.get("/api/tags").status_code == 200  # its pooled connection is open
        for index in range(300):
            sock = socket.socket()
            OPEN.append(sock)
            sock.bind((f"127.0.1.{index % 30 + 1}", 0))
            sock.settimeout(5)
            sock.connect(("127.0.0.1", door_server.port))
            sock.send(b"G")
            hostile.append(sock)
        time.sleep(0.5)
        descriptors = len(os.listdir(f"/proc/{door_server.process.pid}/fd"))
        started = time.monotonic()
        pooled = [holder.get("/api/tags"), holder.post("/api/chat", json=CHAT)]
        with httpx.Client(base_url=door_server.url, headers={"X-API-Key": door_key}, timeout=10) as fresh:
            fresh_answers = [fresh.get("/api/tags"), fresh.post("/api/chat", json=CHAT)]
        elapsed = time.monotonic() - started
    assert [r.status_code for r in pooled + fresh_answers] == [200] * 4
    assert elapsed < 5
    # The server held at most its cap of client sockets (plus its own files), not 300.
    assert descriptors < MAX_CONNECTIONS + 100
    answers = [read_all(sock, limit=HEAD_TIMEOUT + 10)[:12] for sock in hostile]
    # Most were closed to make room for newer ones (the oldest pending first); the rest timed out.
    assert answers.count(b"") >= 300 - MAX_CONNECTIONS
    assert set(answers) <= {b"HTTP/1.1 429", b"HTTP/1.1 408", b""}


def test_past_the_cap_with_every_place_in_flight_a_new_connection_is_refused_503(door_server):
    """Every place holds a request in flight (its body still arriving): the next one gets 503.

    A request in flight is never closed to make room (docs/contract.md §16); idle ones are
    (tests/proxy/test_door_floods.py).
    """
    held = []
    for index in range(MAX_CONNECTIONS + 5):
        sock = connect(door_server, f"127.0.2.{index % 200 + 1}")
        sock.sendall(b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\na")
        held.append(sock)
    late = [read_all(sock, limit=BODY_TIMEOUT / 2)[:12] for sock in held[MAX_CONNECTIONS:]]
    assert late == [b"HTTP/1.1 503"] * 5
    # The places were held, not closed, until each body's deadline: then 408.
    answers = [read_all(sock, limit=BODY_TIMEOUT + 5)[:12] for sock in held[: MAX_CONNECTIONS - 2]]
    assert set(answers) == {b"HTTP/1.1 408"}


def test_the_run_command_raises_the_open_file_limit_for_its_cap_and_listens_with_its_backlog(
    tmp_path, sim_server
):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = descriptors_needed(1000)
    assert hard >= needed
    env = settings_env(tmp_path, ollama_urls=f"{sim_server.url}=1", max_connections=1000, listen_backlog=123)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # the child inherits a low soft limit
    try:
        server = LiveServer(env)
        server.start(timeout=60)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        limits = Path(f"/proc/{server.process.pid}/limits").read_text()
        assert f"seadragon: open-file limit raised from 1024 to {needed}" in server.output()
        # A listening socket's Send-Q in `ss -ltn` is its backlog.
        listing = subprocess.run(
            ["ss", "-Hltn", f"sport = :{server.port}"], capture_output=True, text=True, check=True
        ).stdout.split()
        assert listing[2] == "123", listing
    finally:
        server.stop()
    open_files = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    assert open_files.split()[3] == str(needed)
