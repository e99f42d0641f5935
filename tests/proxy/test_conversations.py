"""Conversation keys (docs/contract.md §12): every turn of a conversation gets the same one."""

from __future__ import annotations

from proxy_app.conversations import conversation_key

SYSTEM = {"role": "system", "content": "You are terse."}
FIRST = {"role": "user", "content": "Why is the sea blue?"}


def chat(*messages) -> dict:
    return {"model": "m", "messages": list(messages)}


def test_every_turn_of_a_chat_has_the_key_of_its_start():
    one = conversation_key("/api/chat", chat(SYSTEM, FIRST), [], "m")
    three = chat(
        SYSTEM, FIRST, {"role": "assistant", "content": "Rayleigh."}, {"role": "user", "content": "And?"}
    )
    assert one is not None and conversation_key("/api/chat", three, [], "m") == one
    assert conversation_key("/v1/chat/completions", three, [], "m") == one
    assert conversation_key("/api/chat", chat(FIRST), [], "m") != one  # another system prompt
    assert conversation_key("/api/chat", chat(SYSTEM, FIRST), [], "other") != one  # another model


def test_the_header_names_the_conversation_whatever_the_body():
    named = conversation_key("/api/chat", chat(FIRST), [("X-Seadragon-Conversation", "ticket-42")], "m")
    other = conversation_key("/api/embed", {}, [("x-seadragon-conversation", "ticket-42")], "m")
    assert named == other and named != conversation_key("/api/chat", chat(FIRST), [], "m")


def test_a_generate_prompt_is_named_by_its_first_2_kib():
    start = "x" * 2048
    assert conversation_key("/api/generate", {"prompt": start + "turn 1"}, [], "m") == conversation_key(
        "/api/generate", {"prompt": start + "turn 2 is longer"}, [], "m"
    )
    assert conversation_key("/api/generate", {"prompt": "a"}, [], "m") != conversation_key(
        "/api/generate", {"prompt": "b"}, [], "m"
    )


def test_requests_without_a_conversation_have_none():
    assert conversation_key("/api/embed", {"input": "x"}, [], "m") is None
    assert conversation_key("/api/chat", {"messages": "nope"}, [], "m") is None
    assert conversation_key("/api/generate", {"prompt": ""}, [], "m") is None


def test_every_spelling_of_the_model_names_one_conversation():
    # Affinity follows the model Ollama runs: its long and short names are one model.
    short = conversation_key("/api/chat", chat(FIRST), [], "llama3.2")
    for spelling in ("llama3.2:latest", "registry.ollama.ai/library/llama3.2", "library/Llama3.2:latest"):
        assert conversation_key("/api/chat", chat(FIRST), [], spelling) == short
        assert conversation_key("/api/generate", {"prompt": "hi"}, [], spelling) == conversation_key(
            "/api/generate", {"prompt": "hi"}, [], "llama3.2"
        )
