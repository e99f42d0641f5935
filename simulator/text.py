"""Fake but deterministic content: timestamps, tokens, token counts, embeddings, model metadata."""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import time
import zlib
from functools import lru_cache

WORDS = (
    "the sea dragon drifts through kelp while tiny fish watch its leafy fins glow in green light "
    "and currents carry plankton past the reef where patient eyes wait for dusk to hunt quietly "
    "among stones shells and sand that shimmer under waves of a calm and endless blue ocean"
).split()
# Pre-encoded JSON string literals, so a chunk is built by joining bytes, never by json.dumps.
FIRST_TOKENS = tuple(json.dumps(word.capitalize()).encode() for word in WORDS)
NEXT_TOKENS = tuple(json.dumps(" " + word).encode() for word in WORDS)


@lru_cache(maxsize=4)
def _seconds(epoch_seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_seconds))


def rfc3339(ns: int | None = None) -> str:
    """A UTC timestamp with nanoseconds, trailing zeros trimmed, as Go's RFC3339Nano writes it."""
    seconds, fraction = divmod(time.time_ns() if ns is None else ns, 1_000_000_000)
    digits = f"{fraction:09d}".rstrip("0")
    return f"{_seconds(seconds)}.{digits}Z" if digits else f"{_seconds(seconds)}Z"


def seed_of(text: str) -> int:
    """A stable number derived from the prompt, so the same prompt gets the same answer."""
    return zlib.crc32(text.encode("utf-8", "surrogatepass"))


def token_json(seed: int, index: int) -> bytes:
    """Token ``index`` of the answer as a JSON string literal."""
    table = NEXT_TOKENS if index else FIRST_TOKENS
    return table[(seed + index) % len(WORDS)]


def answer_text(seed: int, count: int) -> str:
    """The whole answer a stream of ``count`` tokens spells."""
    return "".join(json.loads(token_json(seed, i)) for i in range(count))


def count_tokens(text: str) -> int:
    """A rough token count (words and punctuation), never zero for non-empty text."""
    return len(re.findall(r"\w+|[^\w\s]", text)) or (1 if text else 0)


def message_text(messages: object) -> str:
    """The text content of a chat request's messages (OpenAI content parts included)."""
    items = messages if isinstance(messages, list) else []
    contents = [m.get("content") for m in items if isinstance(m, dict)]
    return "\n".join(part_text(c) for c in contents if isinstance(c, str | list))


def context_ids(seed: int, length: int) -> list[int]:
    """The ``context`` array of /api/generate: fake token ids."""
    return [(seed + 7919 * i) % 128_000 + 1 for i in range(length)]


def embedding(text: str, dim: int) -> list[float]:
    """A unit vector that depends only on ``text`` and ``dim``."""
    rng = random.Random(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest())
    values = [rng.gauss(0.0, 1.0) for _ in range(dim)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def normalize_model(name: str) -> str:
    """Ollama's default tag: ``llama3.2`` means ``llama3.2:latest``."""
    base = name.rsplit("/", 1)[-1]
    return name if ":" in base else f"{name}:latest"


def model_details(name: str) -> dict[str, object]:
    """The ``details`` object Ollama reports for a model."""
    base = name.rsplit("/", 1)[-1]
    family = re.match(r"[a-z]*", base.lower()).group() or "llama"  # type: ignore[union-attr]
    size = re.search(r":(\d+(?:\.\d+)?)b\b", base.lower())
    return {
        "parent_model": "",
        "format": "gguf",
        "family": family,
        "families": [family],
        "parameter_size": f"{size.group(1)}B" if size else "3.2B",
        "quantization_level": "Q4_K_M",
    }


def model_digest(name: str) -> str:
    """A stable sha256 hex digest for a model name."""
    return hashlib.sha256(normalize_model(name).encode()).hexdigest()


def model_size(name: str) -> int:
    """A plausible file size in bytes (about 0.6 bytes per parameter at Q4_K_M)."""
    parameters = float(str(model_details(name)["parameter_size"])[:-1])
    return int(parameters * 0.6e9) + int(model_digest(name)[:6], 16)


SAY_PREFIX = "!say "


def say_text(message: str) -> str | None:
    """The answer a ``!say TEXT`` line asks for (``\\n`` escapes become newlines), or None."""
    for line in message.splitlines():
        if line.startswith(SAY_PREFIX):
            return line[len(SAY_PREFIX) :].replace("\\n", "\n")
    return None


def split_tokens(text: str) -> list[str]:
    """Cut a text into token-sized pieces (a word with the whitespace before it) that join back to it."""
    return re.findall(r"\s*\S+|\s+", text)


def part_text(content: object) -> str:
    """The text of a message's content: a string, or the ``text`` of its parts (any protocol)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def last_user_text(messages: object) -> str:
    """The text of the last ``user`` message of a chat request."""
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") == "user":
            return part_text(message.get("content"))
    return ""


def is_cloud_model(name: str) -> bool:
    """A model Ollama runs on ollama.com: its tag ends in ``cloud`` (``gpt-oss:120b-cloud``, ``x:cloud``)."""
    base = name.rsplit("/", 1)[-1]
    return ":" in base and base.rsplit(":", 1)[1].endswith("cloud")
