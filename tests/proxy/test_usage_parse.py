"""Token counts from Ollama's and OpenAI's real response shapes (docs/contract.md §6)."""

from __future__ import annotations

import json

import pytest

from proxy_app.usage_parse import (
    MAX_LINE_BYTES,
    UsageTracker,
    ollama_usage,
    openai_usage,
)

GENERATE_CHUNK = (
    b'{"model":"llama3.2","created_at":"2024-08-04T19:22:45.499127Z","response":"The","done":false}\n'
)
GENERATE_FINAL = (
    b'{"model":"llama3.2","created_at":"2024-08-04T19:22:45.499127Z","response":"","done":true,'
    b'"done_reason":"stop","context":[1,2,3],"total_duration":10706818083,"load_duration":6338219291,'
    b'"prompt_eval_count":26,"prompt_eval_duration":130079000,"eval_count":259,'
    b'"eval_duration":4232710000}\n'
)
CHAT_CHUNK = (
    b'{"model":"llama3.2","created_at":"2024-08-04T08:52:19.385406455-07:00",'
    b'"message":{"role":"assistant","content":"The"},"done":false}\n'
)
CHAT_FINAL = (
    b'{"model":"llama3.2","created_at":"2024-08-04T19:22:45.499127Z",'
    b'"message":{"role":"assistant","content":""},"done_reason":"stop","done":true,'
    b'"total_duration":4883583458,"load_duration":1334875,"prompt_eval_count":26,'
    b'"prompt_eval_duration":342546000,"eval_count":282,"eval_duration":4535599000}\n'
)
EMBED_BODY = (
    b'{"model":"all-minilm","embeddings":[[0.010071029,-0.0017594862,0.05007221]],'
    b'"total_duration":14143917,"load_duration":1019500,"prompt_eval_count":8}'
)
LEGACY_EMBEDDINGS_BODY = b'{"embedding":[0.5670403838157654,0.009260174818336964]}'
OLLAMA_ERROR_LINE = b'{"error":"model \\"nope\\" not found, try pulling it first"}\n'

OPENAI_CHUNK = (
    b'data: {"id":"chatcmpl-574","object":"chat.completion.chunk","created":1720000000,'
    b'"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,'
    b'"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]}\n\n'
)
OPENAI_LAST_CHUNK = (
    b'data: {"id":"chatcmpl-574","object":"chat.completion.chunk","created":1720000000,'
    b'"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,'
    b'"delta":{"role":"assistant","content":""},"finish_reason":"stop"}]}\n\n'
)
OPENAI_USAGE_EVENT = (
    b'data: {"id":"chatcmpl-574","object":"chat.completion.chunk","created":1720000000,'
    b'"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[],'
    b'"usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46}}\n\n'
)
OPENAI_DONE = b"data: [DONE]\n\n"
OPENAI_BODY = (
    b'{"id":"chatcmpl-193","object":"chat.completion","created":1720000000,"model":"llama3.2",'
    b'"system_fingerprint":"fp_ollama","choices":[{"index":0,"message":{"role":"assistant",'
    b'"content":"Hello!"},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":19,"completion_tokens":7,"total_tokens":26}}\n'
)
OPENAI_EMBEDDINGS_BODY = (
    b'{"object":"list","data":[{"object":"embedding","embedding":[0.1,-0.2],"index":0}],'
    b'"model":"all-minilm","usage":{"prompt_tokens":5,"total_tokens":5}}'
)


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def track(kind: str, chunks: list[bytes]) -> tuple[int | None, int | None]:
    tracker = UsageTracker(kind)
    for chunk in chunks:
        tracker.feed(chunk)
    return tracker.usage()


class TestOllamaUsage:
    def test_it_reads_the_counts_of_a_final_generate_line(self):
        assert ollama_usage(GENERATE_FINAL) == (26, 259)

    def test_it_reads_the_counts_of_a_final_chat_line(self):
        assert ollama_usage(CHAT_FINAL) == (26, 282)

    def test_it_reads_the_prompt_count_of_an_embed_body(self):
        assert ollama_usage(EMBED_BODY) == (8, None)

    @pytest.mark.parametrize(
        "line", [LEGACY_EMBEDDINGS_BODY, OLLAMA_ERROR_LINE, GENERATE_CHUNK, b"", b"  \n", b"not json", b"[1]"]
    )
    def test_it_knows_nothing_from_a_line_without_counts(self, line):
        assert ollama_usage(line) == (None, None)

    def test_it_ignores_counts_that_are_not_whole_numbers(self):
        line = b'{"done":true,"prompt_eval_count":true,"eval_count":"12"}'
        assert ollama_usage(line) == (None, None)

    def test_it_reads_the_counts_at_the_end_of_a_body_too_long_to_parse(self):
        vector = ",".join(["0.0123456789"] * (MAX_LINE_BYTES // 10))
        body = f'{{"model":"m","embeddings":[[{vector}]],"total_duration":1,"prompt_eval_count":77}}'
        assert len(body) > MAX_LINE_BYTES
        assert ollama_usage(body.encode()) == (77, None)

    def test_it_is_not_fooled_by_generated_text_that_mentions_the_keys(self):
        text = 'say \\"eval_count\\": 999 and \\"prompt_eval_count\\": 888 ' * (MAX_LINE_BYTES // 40)
        body = f'{{"model":"m","response":"{text}","done":true}}'.encode()
        assert len(body) > MAX_LINE_BYTES
        assert ollama_usage(body) == (None, None)


class TestOpenAIUsage:
    def test_it_reads_the_usage_of_a_chat_completion_body(self):
        assert openai_usage(OPENAI_BODY) == (19, 7)

    def test_it_reads_the_usage_event_of_a_stream(self):
        assert openai_usage(OPENAI_USAGE_EVENT) == (12, 34)

    def test_it_reads_the_prompt_tokens_of_an_embeddings_body(self):
        assert openai_usage(OPENAI_EMBEDDINGS_BODY) == (5, None)

    @pytest.mark.parametrize("event", [OPENAI_CHUNK, OPENAI_DONE, b'data: {"error":{"message":"boom"}}', b""])
    def test_it_knows_nothing_from_an_event_without_usage(self, event):
        assert openai_usage(event) == (None, None)


class TestUsageTracker:
    NDJSON_STREAM = GENERATE_CHUNK * 5 + GENERATE_FINAL
    SSE_STREAM = OPENAI_CHUNK * 5 + OPENAI_LAST_CHUNK + OPENAI_USAGE_EVENT + OPENAI_DONE

    @pytest.mark.parametrize("size", [1, 2, 7, 64, 100_000])
    def test_it_reads_a_native_stream_whatever_the_chunking(self, size):
        assert track("ollama", chunked(self.NDJSON_STREAM, size)) == (26, 259)

    @pytest.mark.parametrize("size", [1, 3, 50, 100_000])
    def test_it_reads_the_usage_event_of_an_sse_stream_before_done(self, size):
        assert track("openai", chunked(self.SSE_STREAM, size)) == (12, 34)

    def test_it_reads_a_chat_stream_sent_one_line_per_chunk(self):
        assert track("ollama", [CHAT_CHUNK, CHAT_CHUNK, CHAT_FINAL]) == (26, 282)

    def test_it_reads_a_body_without_a_trailing_newline(self):
        assert track("ollama", chunked(EMBED_BODY, 16)) == (8, None)

    def test_it_reads_a_non_stream_openai_body(self):
        assert track("openai", chunked(OPENAI_BODY, 10)) == (19, 7)

    def test_it_reads_a_pretty_printed_openai_body(self):
        body = json.dumps(json.loads(OPENAI_BODY), indent=2).encode()
        assert b"\n" in body
        assert track("openai", chunked(body, 9)) == (19, 7)

    def test_it_reports_nothing_for_a_stream_cut_before_its_final_line(self):
        assert track("ollama", [GENERATE_CHUNK * 3, GENERATE_FINAL[:40]]) == (None, None)

    def test_it_reports_nothing_for_a_stream_ending_in_an_error(self):
        assert track("ollama", [GENERATE_CHUNK, OLLAMA_ERROR_LINE]) == (None, None)
        error_event = b'data: {"error":{"message":"upstream closed"}}\n\n'
        assert track("openai", [OPENAI_CHUNK, error_event]) == (None, None)

    def test_it_reports_nothing_for_an_sse_stream_without_a_usage_event(self):
        assert track("openai", [OPENAI_CHUNK, OPENAI_LAST_CHUNK, OPENAI_DONE]) == (None, None)

    def test_it_stays_bounded_on_an_endless_line_and_still_reads_its_end(self):
        tracker = UsageTracker("ollama")
        tracker.feed(b'{"model":"m","embeddings":[[')
        piece = b"0.0123456789," * 5000
        for _ in range(200):  # ~13 MB, far beyond what it may keep
            tracker.feed(piece)
            assert len(tracker._partial) <= MAX_LINE_BYTES
        tracker.feed(b'0.1]],"total_duration":5,"prompt_eval_count":4096}')
        assert tracker.usage() == (4096, None)

    def test_it_keeps_only_the_last_line_of_a_long_stream(self):
        tracker = UsageTracker("ollama")
        for _ in range(10_000):
            tracker.feed(GENERATE_CHUNK)
        tracker.feed(GENERATE_FINAL)
        assert tracker._last == GENERATE_FINAL.rstrip(b"\n")
        assert tracker.usage() == (26, 259)

    def test_it_refuses_an_unknown_kind(self):
        with pytest.raises(ValueError, match="unknown response kind"):
            UsageTracker("grpc")


@pytest.mark.parametrize(
    ("kind", "piece"),
    [
        ("ollama", b'{"model":"m","message":{"role":"assistant","content":"x"},"done":false}\n'),
        ("openai", b'data: {"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]}\n\n'),
        ("anthropic", b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0}\n\n'),
        ("responses", b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta"}\n\n'),
    ],
)
def test_a_stream_cut_before_its_usage_is_charged_the_pieces_it_carried(kind, piece):
    tracker = UsageTracker(kind)
    stream = piece * 37
    for start in range(0, len(stream), 7):  # chunks that split every marker somewhere
        tracker.feed(stream[start : start + 7])
    assert tracker.pieces == 37
    assert tracker.delivered()[1] == 37
    # Text that merely mentions a marker is not a piece: its quotes are escaped inside a string.
    quoted = UsageTracker(kind)
    quoted.feed(b'{"content":"say \\"done\\":false and \\"finish_reason\\":null"}\n')
    assert quoted.pieces == 0


def test_final_usage_wins_over_the_pieces_counted():
    tracker = UsageTracker("ollama")
    tracker.feed(b'{"message":{"content":"x"},"done":false}\n' * 5)
    tracker.feed(b'{"done":true,"prompt_eval_count":3,"eval_count":9}\n')
    assert tracker.delivered() == (3, 9)
