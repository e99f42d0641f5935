"""The simulator reloads, expires and caches as Ollama's scheduler and runner do (server/sched.go)."""

from __future__ import annotations

import concurrent.futures
import math
import time

import httpx
import pytest

from common.durations import DurationError, format_duration, parse_go_duration, parse_keep_alive
from simulator import ThreadHandle
from simulator.prefix_cache import PrefixCache, tokens_of
from simulator.vram import Runner, needs_reload, wanted_options

LOAD = 0.25
SECOND = 1e9


def chat(http: httpx.Client, content: str = "Why is the sea blue?", headers=None, **extra) -> dict:
    """A non-streamed /api/chat answer."""
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": content}], "stream": False}
    answer = http.post("/api/chat", json={**body, **extra}, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


def loads(sim: ThreadHandle) -> int:
    return sim.stats()["vram"]["loads"]


def test_other_runner_options_reload_the_model_and_load_duration_says_so(
    sim: ThreadHandle, http: httpx.Client
) -> None:
    sim.configure(load_time=LOAD)
    first = chat(http, options={"num_ctx": 2048})
    same = chat(http, options={"num_ctx": 2048, "temperature": 0.1})  # not a Runner key
    other = chat(http, options={"num_ctx": 8192})
    assert first["load_duration"] >= LOAD * 0.95 * SECOND
    assert same["load_duration"] < LOAD * SECOND / 2
    assert other["load_duration"] >= LOAD * 0.95 * SECOND
    assert loads(sim) == 2 and sim.stats()["vram"]["reloads"] == 1
    assert http.get("/api/ps").json()["models"][0]["context_length"] == 8192


def test_the_automatic_num_ctx_reloads_a_model_loaded_with_another(
    sim: ThreadHandle, http: httpx.Client
) -> None:
    sim.configure(load_time=LOAD, default_num_ctx=4096)
    chat(http)  # automatic: 4096
    chat(http)  # automatic again: the same runner (runner.numCtxAuto && req.numCtxAuto)
    assert loads(sim) == 1
    chat(http, options={"num_ctx": 4096})  # explicit, but equal to the loaded value
    assert loads(sim) == 1
    chat(http, options={"num_ctx": 8192})
    assert loads(sim) == 2
    answer = chat(http)  # none sent: the automatic 4096 differs from 8192
    assert loads(sim) == 3 and answer["load_duration"] >= LOAD * 0.95 * SECOND


def test_keep_alive_sets_the_session_and_a_request_without_it_keeps_it(
    sim: ThreadHandle, http: httpx.Client
) -> None:
    chat(http, keep_alive="1h")
    chat(http)  # no keep_alive: the runner's session stays an hour
    (row,) = http.get("/api/ps").json()["models"]
    expires = time.mktime(time.strptime(row["expires_at"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert 3000 < expires - time.time() <= 3601


def test_keep_alive_zero_unloads_once_the_last_request_ends(sim: ThreadHandle, http: httpx.Client) -> None:
    sim.configure(token_delay=0.05)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        long = pool.submit(chat, http, "a long one", {"X-Sim-Tokens": "20"})
        time.sleep(0.1)
        chat(http, keep_alive=0)  # ends while the long one still runs: the runner stays
        assert [m["name"] for m in http.get("/api/ps").json()["models"]] == ["llama3.2:latest"]
        long.result()
    assert http.get("/api/ps").json()["models"] == []
    chat(http)
    assert loads(sim) == 2


def test_prompt_evaluation_costs_only_the_tokens_not_cached(sim: ThreadHandle, http: httpx.Client) -> None:
    rate = 0.002
    sim.configure(prompt_eval_rate=rate, num_parallel=1)
    words = " ".join(f"w{i}" for i in range(200))
    first = chat(http, words)
    assert first["prompt_eval_duration"] >= 200 * rate * 0.95 * SECOND
    turn = [
        {"role": "user", "content": words},
        {"role": "assistant", "content": first["message"]["content"]},
        {"role": "user", "content": "and then?"},
    ]
    body = {"model": "llama3.2", "messages": turn, "stream": False}
    second = http.post("/api/chat", json=body).json()
    assert second["prompt_eval_duration"] < 20 * rate * SECOND  # only "and then?" is new
    chat(http, "something else entirely")  # the only slot now holds another prompt
    third = http.post("/api/chat", json=body).json()
    assert third["prompt_eval_duration"] >= 200 * rate * 0.95 * SECOND


def test_the_cache_has_one_entry_per_parallel_slot_chosen_as_llama_cpp_does() -> None:
    cache = PrefixCache(2)
    a, b = tokens_of("alpha beta gamma"), tokens_of("delta epsilon")
    for tokens in (a, b):
        slot, cached = cache.take(tokens)
        assert cached == 0
        cache.done(slot, tokens)
    slot_a, cached = cache.take(a + ("more",))
    assert cached == 3
    assert cache.take(b) == (1 - slot_a, 2)  # the other idle slot
    assert cache.take(a) == (-1, 0)  # both busy: nothing cached to use
    cache.done(slot_a, None)  # a request that failed leaves the slot as it was
    assert cache.take(a)[1] == 3
    single = PrefixCache(1)
    for tokens in (a, b):
        slot, _ = single.take(tokens)
        single.done(slot, tokens)
    assert single.take(a)[1] == 0


def test_a_prompt_sharing_too_little_takes_the_least_recently_used_slot() -> None:
    cache = PrefixCache(2)
    old, new = ("s",) + tokens_of("one two three four five six seven eight nine ten"), ("s", "x") * 10
    slot_old, _ = cache.take(old)
    cache.done(slot_old, old)
    slot_other, _ = cache.take(("z",))
    cache.done(slot_other, ("z",))
    assert cache.take(new) == (slot_old, 0)  # one token of twenty shared: below 10 %


@pytest.mark.parametrize(
    ("loaded", "asked", "reload"),
    [
        ({}, {}, False),
        ({"num_ctx": 2048}, {"num_ctx": 2048, "seed": 3}, False),
        ({"num_ctx": 2048}, {}, True),
        ({}, {"num_ctx": 4096}, False),  # equal to the automatic value
        ({"num_gpu": 20}, {"num_gpu": -1}, False),  # num_gpu < 0: "don't reload"
        ({"num_batch": 256}, {}, True),
        ({"use_mmap": False}, {}, True),  # set by the client, not by the scheduler: compared
        ({"num_thread": 8}, {"num_thread": 4}, True),
        ({"main_gpu": 0}, {"main_gpu": 1}, True),
        ({}, {"draft_num_predict": 4}, True),
    ],
)
def test_needs_reload_compares_runner_options_as_ollama_does(loaded: dict, asked: dict, reload: bool) -> None:
    runner = Runner(wanted_options(loaded, 4096), 300.0, PrefixCache(1))
    assert needs_reload(runner, wanted_options(asked, 4096)) is reload


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (30, 30.0),
        (1.5, 1.5),
        ("30m", 1800.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("500ms", 0.5),
        ("0", 0.0),
        ("-1s", math.inf),
        (-1, math.inf),
        ("+2m", 120.0),
        (".5s", 0.5),
    ],
)
def test_durations_are_read_as_ollama_reads_them(value: object, seconds: float) -> None:
    assert parse_keep_alive(value) == seconds


@pytest.mark.parametrize("value", ["300", "5 m", "m", "1d", "", ".s", True, None, "1h-30m"])
def test_durations_ollama_refuses_are_refused(value: object) -> None:
    with pytest.raises(DurationError):
        parse_keep_alive(value)


def test_durations_are_shown_in_go_form() -> None:
    assert [format_duration(s) for s in (1800, 5400, 45, 0, math.inf, 0.5)] == [
        "30m",
        "1h30m",
        "45s",
        "0",
        "-1",
        "0.5s",
    ]
    assert parse_go_duration(format_duration(5400)) == 5400
