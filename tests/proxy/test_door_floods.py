"""The floods of issue 19 against ``python asgi.py``, over raw sockets (docs/contract.md §16).

- Idle kept-alive: anonymous sockets ask ``GET /health`` once, read the answer and stay idle.
  Before §16 they were neither pending nor evictable: they filled ``MAX_CONNECTIONS`` for
  ``KEEPALIVE_TIMEOUT`` and a key holder's new connection got 503.
- Slow bodies: sockets drip a body into the admin app (Flask on a2wsgi's 8 worker threads).
  Before §16 each held a worker thread for as long as it dripped: the admin API and sign-in froze,
  and nothing cut the drippers off.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time

import httpx
import pytest

from tests.proxy.door_sockets import connect, read_all, read_response
from tests.proxy.live_gateway import ADMIN_PASSWORD, BODY_TIMEOUT, MAX_CONNECTIONS, MAX_IDLE_PER_IP

pytestmark = pytest.mark.costly  # a real `python asgi.py`, raw sockets, waits out a body timeout

HEALTH = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"


def idle_after_health(server, source: str) -> socket.socket:
    """A socket that asked ``GET /health``, read the answer, and now idles (kept alive)."""
    sock = connect(server, source)
    sock.sendall(HEALTH)
    assert read_response(sock).startswith(b"HTTP/1.1 200 ")
    return sock


def is_closed(sock: socket.socket, wait: float = 0.5) -> bool:
    """True when the server has closed ``sock`` (within ``wait`` seconds); it must have sent nothing."""
    sock.settimeout(wait)
    try:
        data = sock.recv(1)
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    assert data == b"", data
    return True


def served_quickly(server, key: str) -> float:
    """Seconds a key holder's request on a new connection took (it must be answered 200)."""
    started = time.monotonic()
    with httpx.Client(base_url=server.url, headers={"X-API-Key": key}, timeout=10) as fresh:
        assert fresh.get("/api/tags").status_code == 200
    return time.monotonic() - started


def test_an_idle_kept_alive_flood_from_one_address_keeps_only_max_idle_per_ip(door_server, door_key):
    flood = [idle_after_health(door_server, "127.0.3.1") for _ in range(MAX_CONNECTIONS + 10)]
    time.sleep(0.3)
    still_open = [sock for sock in flood if not is_closed(sock, wait=0.05)]
    # Only the newest MAX_IDLE_PER_IP stay: each one past the cap closed the oldest.
    assert still_open == flood[-MAX_IDLE_PER_IP:]
    assert served_quickly(door_server, door_key) < 1.0
    for sock in still_open:  # they are still served: idle is allowed, up to the cap
        sock.sendall(HEALTH)
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")


def test_at_max_idle_per_ip_nothing_is_closed_and_one_more_closes_the_oldest(door_server):
    held = [idle_after_health(door_server, "127.0.3.2") for _ in range(MAX_IDLE_PER_IP)]
    time.sleep(0.3)
    assert not any(is_closed(sock, wait=0.05) for sock in held)
    newest = idle_after_health(door_server, "127.0.3.2")
    assert is_closed(held[0]) and not any(is_closed(sock, wait=0.05) for sock in [*held[1:], newest])
    # A connection whose last request carried a credential is not an anonymous idle one.
    keyed = connect(door_server, "127.0.3.2")
    keyed.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer x\r\n\r\n")
    assert read_response(keyed).startswith(b"HTTP/1.1 ")
    assert not any(is_closed(sock, wait=0.05) for sock in [*held[1:], newest, keyed])


def test_an_idle_kept_alive_flood_from_many_addresses_makes_room_for_a_key_holder(door_server, door_key):
    """Anonymous idle sockets hold every place the cap allows: a key holder still gets one at once."""
    per_address = MAX_IDLE_PER_IP - 1
    flood = [
        idle_after_health(door_server, f"127.0.4.{index // per_address + 1}")
        for index in range(MAX_CONNECTIONS)
    ]
    time.sleep(0.3)
    assert served_quickly(door_server, door_key) < 1.0
    assert served_quickly(door_server, door_key) < 1.0
    # Room was made from the connections idle longest: the first of the flood, not the newest.
    assert is_closed(flood[0]) and not is_closed(flood[-1], wait=0.05)


def test_slow_bodies_into_sign_in_and_sign_up_do_not_stall_the_admin_app_and_get_408(door_server):
    """Ten sockets drip bodies into the admin app and the chat; the admin API and sign-in answer meanwhile."""
    form = "application/x-www-form-urlencoded"  # so that Flask reads the body
    targets = [("/auth/login", form)] * 8 + [
        ("/auth/register", form),
        ("/chat/api/reply", "application/json"),
    ]
    drippers = []
    for index, (path, kind) in enumerate(targets):
        sock = connect(door_server, f"127.0.5.{index + 1}")
        head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {kind}\r\nContent-Length: 1000\r\n\r\n"
        sock.sendall(head.encode())
        drippers.append(sock)
    stop = threading.Event()

    def drip() -> None:
        while not stop.is_set():
            for sock in drippers:
                try:
                    sock.send(b"a")
                except OSError:
                    pass
            time.sleep(0.2)

    dripping = threading.Thread(target=drip, daemon=True)
    dripping.start()
    started = time.monotonic()
    try:
        time.sleep(0.5)  # every dripper's head is in and its body begun
        timings = []
        with httpx.Client(base_url=door_server.url, timeout=5) as admin:
            for _ in range(3):
                began = time.monotonic()
                login = admin.post("/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD})
                assert login.status_code == 200, login.text
                bearer = {"Authorization": f"Bearer {login.json()['access_token']}"}
                assert admin.get("/api/admin/apikeys", headers=bearer).status_code == 200
                assert admin.get("/auth/login").status_code == 200
                timings.append(time.monotonic() - began)
        assert max(timings) < 1.0, timings
        answers = [read_all(sock, limit=BODY_TIMEOUT + 5) for sock in drippers]
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        dripping.join()
    assert [answer[:12] for answer in answers] == [b"HTTP/1.1 408"] * len(targets)
    assert all(b"connection: close" in answer.lower() for answer in answers)
    assert elapsed < BODY_TIMEOUT + 3


def test_a_body_still_dripping_after_a_refusal_is_cut_at_the_body_timeout(door_server):
    """A keyless request is refused 401 before its body is read; the body's deadline still holds."""
    sock = connect(door_server, "127.0.6.1")
    sock.sendall(b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
    assert read_response(sock).startswith(b"HTTP/1.1 401 ")
    started = time.monotonic()
    closed = False
    while not closed and time.monotonic() - started < BODY_TIMEOUT + 5:
        try:
            sock.send(b"a")
        except OSError:
            closed = True
            break
        closed = is_closed(sock, wait=0.2)
    assert closed
    assert time.monotonic() - started < BODY_TIMEOUT + 3


def test_an_admitted_blob_upload_may_take_longer_than_the_body_timeout(door_server):
    """Model files are gigabytes: an admin's upload streams on past BODY_TIMEOUT (no 408)."""
    token = httpx.post(
        door_server.url + "/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD}
    ).json()["access_token"]
    blob = b"GGUF" * 64
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    sock = connect(door_server, "127.0.6.2")
    sock.sendall(
        f"POST /api/blobs/{digest} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Length: {len(blob)}\r\n\r\n".encode()
    )
    started = time.monotonic()
    for piece in range(0, len(blob), 32):
        sock.sendall(blob[piece : piece + 32])
        time.sleep((BODY_TIMEOUT + 1.5) / (len(blob) / 32))
    assert time.monotonic() - started > BODY_TIMEOUT + 1
    assert read_response(sock).startswith(b"HTTP/1.1 201 ")


def test_a_body_over_max_body_to_the_admin_app_is_413_before_any_of_it_is_read(door_server):
    sock = connect(door_server, "127.0.6.3")
    sock.sendall(
        b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\n\r\nusername=a" % (16 * 1024 * 1024 + 1)
    )
    answer = read_all(sock, limit=5)
    assert answer.startswith(b"HTTP/1.1 413 ") and b"request body too large" in answer
