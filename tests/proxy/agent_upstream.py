"""Fixed Anthropic and Responses answers as Ollama frames them, and a recording upstream for blobs.

Everything else about the agents' protocols runs against the bundled simulator.
This module keeps what the simulator cannot do:

- fixed event lists and bodies (``anthropic_events``, ``responses_events``, ...)
  that tests/proxy/test_protocols.py parses for usage, framed as Ollama's
  ``middleware/anthropic.go`` and ``middleware/openai.go`` frame them;
- an upstream that accepts a blob under any digest form Ollama accepts
  (``sha256:``/``sha256-``, hex of either case) and records each request's
  method and raw bytes as received (tests/proxy/test_agent_lanes.py); the
  simulator checks a real lower-case ``sha256:`` digest.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field

import uvicorn

TEXT = ("Hello", " there")
INPUT_TOKENS, OUTPUT_TOKENS = 12, 2


def _sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def anthropic_events(model: str) -> list[bytes]:
    """An Anthropic Messages stream as Ollama sends it."""
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": 0},
    }
    events = [
        _sse("message_start", {"type": "message_start", "message": message}),
        _sse(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        _sse("ping", {"type": "ping"}),
    ]
    for text in TEXT:
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}
        events.append(_sse("content_block_delta", delta))
    events += [
        _sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
        _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": OUTPUT_TOKENS},
            },
        ),
        _sse("message_stop", {"type": "message_stop"}),
    ]
    return events


def anthropic_body(model: str) -> dict:
    """A non-streamed Anthropic Messages answer."""
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": "".join(TEXT)}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS},
    }


def responses_body(model: str, status: str = "completed") -> dict:
    """A Responses API ``response`` object."""
    text = "".join(TEXT) if status == "completed" else ""
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1767225600,
        "status": status,
        "model": model,
        "output": [
            {
                "type": "message",
                "id": "msg_1",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS, "total_tokens": 14},
    }


def responses_events(model: str) -> list[bytes]:
    """A Responses API stream as Ollama sends it (named events, sequence numbers, no [DONE])."""
    seq = iter(range(100))
    events = [
        _sse(
            "response.created",
            {
                "type": "response.created",
                "sequence_number": next(seq),
                "response": responses_body(model, "in_progress"),
            },
        ),
    ]
    for text in TEXT:
        delta = {
            "type": "response.output_text.delta",
            "sequence_number": next(seq),
            "item_id": "msg_1",
            "output_index": 0,
            "content_index": 0,
            "delta": text,
        }
        events.append(_sse("response.output_text.delta", delta))
    done = {"type": "response.completed", "sequence_number": next(seq), "response": responses_body(model)}
    events.append(_sse("response.completed", done))
    return events


@dataclass
class Seen:
    """One request as it reached the fake Ollama."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class AgentOllama:
    """The ASGI app; ``requests`` lists what reached it (health checks left out)."""

    requests: list[Seen] = field(default_factory=list)

    def last(self, path: str) -> Seen:
        """The last request to ``path``."""
        return [r for r in self.requests if r.path == path][-1]

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        path = scope["path"]
        if path not in ("/api/tags", "/api/ps"):  # health checks
            self.requests.append(Seen(scope["method"], path, headers, body))
        status, content_type, chunks = self._answer(path)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", content_type.encode())],
            }
        )
        for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    def _answer(self, path: str) -> tuple[int, str, list[bytes]]:
        if path == "/api/tags":
            return (
                200,
                "application/json",
                [json.dumps({"models": [{"name": "llama3.2:latest", "model": "llama3.2:latest"}]}).encode()],
            )
        if path.startswith("/api/blobs/"):
            return 200, "application/json", [json.dumps({"path": path}).encode()]
        return 404, "text/plain", [b"404 page not found"]


class UpstreamServer:
    """:class:`AgentOllama` served by uvicorn on a free port in a thread."""

    def __init__(self) -> None:
        self.app = AgentOllama()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(
            self.app, lifespan="on", log_config=None, log_level="critical", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> UpstreamServer:
        """Serve; return once listening."""
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the fake Ollama did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Shut down and close the socket."""
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
