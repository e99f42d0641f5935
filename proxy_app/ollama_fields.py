"""The top-level JSON fields Ollama reads per route, and Go's case-insensitive key match (§16).

Ollama decodes a request body into a Go struct with ``encoding/json``, which
matches an object key to a field ignoring case (Go's ``bytes.EqualFold``
folding, Kelvin sign ``K`` and long s ``ſ`` included) and lets the last
match win: ``{"model": "qwen", "Model": "llama3.2"}`` runs ``llama3.2``. The
gateway reads keys exactly, so a key that folds onto one of these fields
without being spelled exactly so is refused (docs/contract.md §16) rather
than decided on differently from Ollama.

The names are the ``json`` tags of the struct each handler binds (ollama
``server/routes.go``, ``server/create.go``, ``middleware/openai.go``,
``middleware/anthropic.go``): ``api/types.go`` GenerateRequest, ChatRequest,
EmbedRequest, EmbeddingRequest, ShowRequest, PullRequest, PushRequest,
CreateRequest, CopyRequest, DeleteRequest; ``openai/openai.go``
ChatCompletionRequest, CompletionRequest, EmbedRequest; ``openai/responses.go``
ResponsesRequest; ``anthropic/anthropic.go`` MessagesRequest.
"""

from __future__ import annotations

_COMMON = ("model", "stream", "options", "keep_alive")
_SAMPLING = ("temperature", "top_p", "seed", "stop", "max_tokens", "frequency_penalty", "presence_penalty")

FIELDS: dict[str, frozenset[str]] = {
    name: frozenset(fields)
    for name, fields in {
        "/api/generate": (
            *_COMMON,
            *("prompt", "suffix", "system", "template", "context", "raw", "format", "images", "think"),
            *("truncate", "shift", "_debug_render_only", "logprobs", "top_logprobs"),
        ),
        "/api/chat": (
            *_COMMON,
            *("messages", "format", "tools", "think", "truncate", "shift", "_debug_render_only"),
            *("logprobs", "top_logprobs"),
        ),
        "/api/embed": ("model", "input", "keep_alive", "truncate", "dimensions", "options"),
        "/api/embeddings": ("model", "prompt", "keep_alive", "options"),
        "/api/show": ("model", "system", "template", "verbose", "options", "name"),
        "/api/pull": ("model", "insecure", "username", "password", "stream", "name"),
        "/api/push": ("model", "insecure", "username", "password", "stream", "name"),
        "/api/create": (
            *("model", "stream", "quantize", "draft_quantize", "from", "remote_host", "files"),
            *("draft_files", "adapters", "template", "license", "system", "parameters", "messages"),
            *("renderer", "parser", "requires", "info", "name", "quantization"),
        ),
        "/api/copy": ("source", "destination"),
        "/api/delete": ("model", "name"),
        "/v1/chat/completions": (
            *_SAMPLING,
            *("model", "messages", "stream", "stream_options", "response_format", "tools"),
            *("reasoning", "reasoning_effort", "logprobs", "top_logprobs", "_debug_render_only"),
        ),
        "/v1/completions": (
            *_SAMPLING,
            *("model", "prompt", "stream", "stream_options", "suffix", "logprobs", "_debug_render_only"),
        ),
        "/v1/embeddings": ("input", "model", "dimensions", "encoding_format"),
        "/v1/responses": (
            *("model", "background", "conversation", "include", "input", "instructions"),
            *("max_output_tokens", "reasoning", "temperature", "text", "top_p", "truncation", "tools"),
            "stream",
        ),
        "/v1/messages": (
            *("model", "max_tokens", "messages", "system", "stream", "temperature", "top_p", "top_k"),
            *("stop_sequences", "tools", "tool_choice", "thinking", "metadata", "output_config"),
        ),
    }.items()
}

# The only non-ASCII runes whose Unicode simple case-fold orbit holds an ASCII
# letter (Go's ``unicode.SimpleFold``): KELVIN SIGN with k/K, LATIN SMALL LETTER
# LONG S with s/S. tests/proxy/test_model_as_ollama_reads_it.py derives this
# set from the Unicode database and checks it.
GO_ASCII_FOLDS = {"\u212a": "k", "\u017f": "s"}


def go_fold(key: str) -> str:
    """``key`` folded as Go's ``encoding/json`` folds a name, for names that can match an ASCII field."""
    # Other non-ASCII runes never fold onto ASCII, so they stay as they are (and match no field).
    return "".join(GO_ASCII_FOLDS.get(char) or (char.lower() if char.isascii() else char) for char in key)


def case_variant(route_name: str, keys: list[str]) -> tuple[str, str] | None:
    """A key Ollama would take for one of ``route_name``'s fields though not spelled so, and that field."""
    fields = FIELDS.get(route_name, frozenset())
    for key in keys:
        if key not in fields and (folded := go_fold(key)) in fields:
            return key, folded
    return None
