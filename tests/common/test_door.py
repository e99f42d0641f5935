"""common.door's pure parts: refusals and the open-file limit (the rest: tests/proxy/test_door.py)."""

from __future__ import annotations

import resource

from common.door import descriptors_needed, raise_descriptor_limit, refusal


def test_a_refusal_is_a_complete_json_response_that_closes():
    response = refusal(431, "request head too large")
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert b"connection: close" in head and f"content-length: {len(body)}".encode() in head
    assert body == b'{"error": "request head too large"}'


def test_the_soft_limit_is_raised_to_what_the_cap_needs_within_the_hard_limit():
    calls = []

    def fake(soft: int, hard: int):
        return (lambda _which: (soft, hard)), (lambda _which, limits: calls.append(limits))

    assert raise_descriptor_limit(descriptors_needed(1000), *fake(1024, 1_048_576)) == (1024, 2256, 1_048_576)
    assert calls == [(2256, 1_048_576)]
    calls.clear()
    assert raise_descriptor_limit(50_000, *fake(1024, 20_000)) == (1024, 20_000, 20_000)
    assert calls == [(20_000, 20_000)]
    calls.clear()
    assert raise_descriptor_limit(500, *fake(1024, 20_000)) == (1024, 1024, 20_000)
    assert raise_descriptor_limit(500, *fake(1024, resource.RLIM_INFINITY))[1] == 1024
    assert calls == []
