"""Slow clients (docs/contract.md §10): a slow sender holds no slot, no queue place and no connection
past ``BODY_TIMEOUT``; a slow reader holds at most a bounded buffer of its stream in the gateway."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from common.settings import ConfigError, Settings
from tests.proxy.support import chat_body, log_rows
from tests.waiting import wait_until

pytestmark = pytest.mark.costly  # each test serves the gateway and waits out slow clients

DIRECT = {"X-Forwarded-For": "10.0.0.5"}  # whitelisted
BUFFER_BOUND = 1024 * 1024  # bytes of one stream the gateway may hold for a slow reader (§10)


def head(server, path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nX-Forwarded-For: 10.0.0.5\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def test_body_timeout_is_a_setting_with_a_60_s_default():
    assert Settings.from_env({}).body_timeout == 60.0
    assert Settings.from_env({"SEADRAGON_BODY_TIMEOUT": "2.5"}).body_timeout == 2.5
    with pytest.raises(ConfigError, match="SEADRAGON_BODY_TIMEOUT"):
        Settings.from_env({"SEADRAGON_BODY_TIMEOUT": "0"})


def test_a_slow_sender_holds_no_slot_nor_queue_place_and_is_cut_at_body_timeout_with_408(gateway):
    server = gateway(body_timeout=2)
    body = json.dumps(chat_body(stream=False)).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head(server, "/api/chat", len(body)) + body[:10])
        started = time.monotonic()
        # While it trickles, the only slot serves somebody else and nothing waits.
        other = httpx.post(server.url + "/api/chat", json=chat_body(stream=False), headers=DIRECT, timeout=30)
        assert other.status_code == 200
        # Once that one is done, nothing is held while the slow body still trickles in.
        server.wait_for(lambda snapshot: snapshot["queue_length"] == 0 and snapshot["active_requests"] == 0)
        sock.sendall(body[10:11])
        answer = b""
        while chunk := sock.recv(65536):  # the gateway closes the connection after its 408
            answer += chunk
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"request body not received within 2 s" in answer
    assert 1.5 < waited < 20
    assert wait_until(lambda: len(log_rows(server.settings)) == 2)
    assert sorted(row.status for row in log_rows(server.settings)) == [200, 408]


def test_a_slow_reader_of_a_fast_stream_holds_a_bounded_buffer_and_then_gets_it_whole(gateway):
    server = gateway()
    tokens = 100_000  # about 13 MiB of NDJSON (beyond what the kernel buffers), streamed at full speed
    request = json.dumps(chat_body(stream=True)).encode()
    extra = f"X-Sim-Tokens: {tokens}\r\nX-Sim-Delay: 0\r\n".encode()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the kernel must not absorb it all
    sock.settimeout(30)
    sock.connect(("127.0.0.1", server.port))
    try:
        message = head(server, "/api/chat", len(request))
        sock.sendall(message[:-2] + extra + b"\r\n" + request)
        # The reader stops reading; the gateway must stop pulling from Ollama, not buffer the rest.
        deadline = time.monotonic() + 3
        largest = 0
        while time.monotonic() < deadline:
            largest = max(largest, server.call(lambda: _write_buffered(server)))
            time.sleep(0.05)
        assert server.snapshot()["active_requests"] == 1  # still relaying: held back, not slurped
        assert largest <= BUFFER_BOUND
        received = b""
        while not received.endswith(b"0\r\n\r\n"):  # the last chunk of the chunked stream
            chunk = sock.recv(1 << 20)
            assert chunk, "the stream ended early"
            received += chunk
    finally:
        sock.close()
    assert received.startswith(b"HTTP/1.1 200 ")
    assert received.count(b'"done":false') + received.count(b'"done": false') >= tokens - 50  # framing aside
    assert b'"done":true' in received[-2000:] or b'"done": true' in received[-2000:]


def _write_buffered(server) -> int:
    """Bytes waiting in the gateway's client-side write buffers (uvicorn's transports)."""
    connections = server.server.server_state.connections
    return max((conn.transport.get_write_buffer_size() for conn in connections), default=0)
