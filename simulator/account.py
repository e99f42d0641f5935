"""Status and ollama.com account endpoints, answered as an Ollama server that is not signed in.

Matched against server/routes.go (StatusHandler, WhoamiHandler, SignoutHandler, webExperimentalProxyHandler,
ModelRecommendationsExperimentalHandler), server/cloud_proxy.go (writeCloudUnauthorized) and
server/model_recommendations.go (defaultModelRecommendations).
"""

from __future__ import annotations

import base64
import hashlib
import socket
import urllib.parse
from typing import Any

from simulator.exchange import Exchange, HTTPError

SIGNIN_URL = "https://ollama.com/connect?name={name}&key={key}"  # signinURLStr in server/routes.go
GIGABYTE = 1000**3

RECOMMENDATIONS: list[dict[str, Any]] = [
    {
        "model": "kimi-k2.6:cloud",
        "description": (
            "State-of-the-art coding, long-horizon execution, and multimodal agent swarm capability"
        ),
        "context_length": 262_144,
        "max_output_tokens": 262_144,
    },
    {
        "model": "glm-5.1:cloud",
        "description": "Reasoning and code generation",
        "context_length": 202_752,
        "max_output_tokens": 131_072,
    },
    {
        "model": "qwen3.5:cloud",
        "description": "Reasoning, coding, and agentic tool use with vision",
        "context_length": 262_144,
        "max_output_tokens": 32_768,
    },
    {
        "model": "minimax-m2.7:cloud",
        "description": "Fast, efficient coding and real-world productivity",
        "context_length": 204_800,
        "max_output_tokens": 128_000,
    },
    {"model": "gemma4", "description": "Reasoning and code generation locally", "vram_bytes": 12 * GIGABYTE},
    {
        "model": "qwen3.5",
        "description": "Reasoning, coding, and visual understanding locally",
        "vram_bytes": 14 * GIGABYTE,
    },
]


def signin_url() -> str:
    """Where ollama.com would have this server sign in: its host name and (fake) public key."""
    host = socket.gethostname()
    digest = base64.b64encode(hashlib.sha256(host.encode()).digest()).decode()
    public_key = f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{digest[:43]}"
    key = base64.urlsafe_b64encode(public_key.encode()).decode().rstrip("=")
    return SIGNIN_URL.format(name=urllib.parse.quote(host, safe=""), key=key)


async def status(ex: Exchange) -> None:
    """GET /api/status: cloud enabled (no OLLAMA_NO_CLOUD)."""
    await ex.json({"cloud": {"disabled": False, "source": "none"}})


async def recommendations(ex: Exchange) -> None:
    """GET /api/experimental/model-recommendations: Ollama's built-in defaults."""
    await ex.json({"recommendations": RECOMMENDATIONS})


async def whoami(ex: Exchange) -> None:
    """POST /api/me: ollama.com does not know this server's key."""
    await ex.json({"error": "unauthorized", "signin_url": signin_url()}, 401)


async def signout(ex: Exchange) -> None:
    """POST /api/signout and DELETE /api/user/keys/{key}: there is nobody to sign out."""
    await ex.json({"error": "you are not currently signed in"}, 401)


async def web_experimental(ex: Exchange) -> None:
    """POST /api/experimental/web_search and web_fetch: ollama.com refuses this server's unknown key."""
    if not ex.body.strip():
        raise HTTPError(400, "missing request body")
    await ex.json({"error": "unauthorized", "signin_url": signin_url()}, 401)
