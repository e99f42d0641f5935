"""Multipart bodies built byte by byte."""

from __future__ import annotations


def multipart(*parts: tuple[str, str | None, bytes], boundary: str = "b0undary") -> tuple[bytes, str]:
    """A multipart body of (name, filename or None, value) parts, and its Content-Type."""
    body = b""
    for name, filename, value in parts:
        disposition = f'form-data; name="{name}"' + ("" if filename is None else f'; filename="{filename}"')
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"
