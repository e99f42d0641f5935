"""Raw sockets against a live gateway's door, each closed after its test."""

from __future__ import annotations

import socket

from tests.live import LiveServer

OPEN: list[socket.socket] = []


def connect(server: LiveServer, source: str = "127.0.0.1") -> socket.socket:
    """A raw connection from a chosen loopback address (closed after the test)."""
    sock = socket.socket()
    OPEN.append(sock)
    sock.bind((source, 0))
    sock.settimeout(10)
    sock.connect(("127.0.0.1", server.port))
    return sock


def read_all(sock: socket.socket, limit: float = 10.0) -> bytes:
    """Everything until the server closes (or ``limit`` seconds)."""
    sock.settimeout(limit)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except (TimeoutError, ConnectionResetError):
        pass
    return b"".join(chunks)


def read_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length (head and body may come in several reads)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body
