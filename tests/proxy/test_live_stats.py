"""Live stats for ``/api/admin/stats`` and the dashboard charts (docs/contract.md §6)."""

from __future__ import annotations

import json

import pytest

from proxy_app.live_stats import HISTORY_POINTS, LiveStats, percentile
from proxy_app.request_log import RequestRecord

WALL_START = 1_714_564_800.0  # 2024-05-01T12:00:00Z


class FakeClock:
    """Monotonic seconds that only move when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        return WALL_START + (self.now - 1000.0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def live(clock) -> LiveStats:
    return LiveStats(clock=clock, wall_clock=clock.wall)


SNAPSHOT = {
    "queue_length": 4,
    "active_requests": 2,
    "queue_by_source": {"direct_api": 1, "custom_app": 3, "web_chat": 0},
    "active_by_source": {"direct_api": 0, "custom_app": 0, "web_chat": 2},
    "backends": [
        {"url": "http://gpu-a:11434", "healthy": True, "slots": 2, "in_use": 2, "models": ["llama3.2"]},
        {"url": "http://gpu-b:11434", "healthy": False, "slots": 1, "in_use": 0, "models": None},
    ],
}

_numbers = iter(range(10**9))


def finished(source: str | None = "direct_api", status: int = 200, wait_ms: float | None = 0.0, **fields):
    return RequestRecord(
        request_id=f"req-{next(_numbers)}",
        method="POST",
        endpoint="/api/chat",
        status=status,
        source=source,
        queue_wait_ms=wait_ms,
        **fields,
    )


def test_it_passes_through_the_schedulers_queue_active_and_backends(live):
    payload = live.payload(SNAPSHOT)
    assert (payload["queue_length"], payload["active_requests"]) == (4, 2)
    assert payload["backends"] == SNAPSHOT["backends"]
    assert payload["by_source"]["custom_app"]["queue_length"] == 3
    assert payload["by_source"]["web_chat"]["active_requests"] == 2


def test_it_counts_requests_of_the_last_minute_only(live, clock):
    for _ in range(3):
        live.observe(finished())
    clock.now += 30
    live.observe(finished("web_chat"))
    live.observe(finished("web_chat"))
    assert live.payload(SNAPSHOT)["requests_per_minute"] == 5
    clock.now += 31
    payload = live.payload(SNAPSHOT)
    assert payload["requests_per_minute"] == 2
    assert payload["by_source"]["web_chat"]["requests_per_minute"] == 2
    assert payload["by_source"]["direct_api"]["requests_per_minute"] == 0


def test_it_gives_average_and_p95_wait_in_seconds_over_five_minutes(live, clock):
    for second in range(1, 21):
        live.observe(finished(wait_ms=second * 1000))
        clock.now += 10  # spread over 200 s, all still inside the window
    payload = live.payload(SNAPSHOT)
    assert payload["average_wait_time"] == 10.5
    assert payload["p95_wait_time"] == 19.0
    assert payload["by_source"]["direct_api"]["p50_wait_time"] == 10.0
    clock.now += 301
    payload = live.payload(SNAPSHOT)
    assert (payload["average_wait_time"], payload["p95_wait_time"]) == (0.0, 0.0)


def test_it_keeps_the_sources_apart(live):
    live.observe(finished("direct_api", wait_ms=100))
    live.observe(finished("custom_app", wait_ms=3000))
    live.observe(finished("custom_app", wait_ms=5000))
    by_source = live.payload(SNAPSHOT)["by_source"]
    assert set(by_source) == {"direct_api", "custom_app", "web_chat"}
    assert by_source["direct_api"]["average_wait_time"] == 0.1
    assert by_source["custom_app"]["average_wait_time"] == 4.0
    assert by_source["custom_app"]["p95_wait_time"] == 5.0
    assert by_source["web_chat"] == {
        "queue_length": 0,
        "active_requests": 2,
        "requests_per_minute": 0,
        "average_wait_time": 0.0,
        "p50_wait_time": 0.0,
        "p95_wait_time": 0.0,
        "gpu_seconds": 0.0,
        "gpu_share": 0.0,
    }


def test_gpu_seconds_and_shares_by_source_over_five_minutes(live, clock):
    # docs/contract.md §13: GPU time in /api/admin/stats, per source and in total.
    live.observe(finished("custom_app", gpu_ms=30_000))
    live.observe(finished("web_chat", gpu_ms=10_000))
    live.observe(finished("direct_api", status=429, wait_ms=None))  # never held a slot
    clock.now += 290
    live.observe(finished("custom_app", gpu_ms=20_000))
    stats = live.payload(SNAPSHOT)
    assert (stats["gpu_seconds"], stats["gpu_window_seconds"]) == (60.0, 300)
    shares = {source: (n["gpu_seconds"], n["gpu_share"]) for source, n in stats["by_source"].items()}
    assert shares == {"custom_app": (50.0, 0.8333), "web_chat": (10.0, 0.1667), "direct_api": (0.0, 0.0)}
    assert sum(p["by_source"]["custom_app"]["gpu_seconds"] for p in stats["history"]) == 30.0  # closed points
    clock.now += 20  # the first two left the five minutes
    assert live.payload(SNAPSHOT)["by_source"]["custom_app"]["gpu_share"] == 1.0


def test_a_request_that_never_reached_a_slot_has_no_wait(live):
    live.observe(finished(status=401, source=None, wait_ms=None))
    live.observe(finished(status=499, wait_ms=None, stage="queued"))
    payload = live.payload(SNAPSHOT)
    assert payload["requests_per_minute"] == 2
    assert payload["average_wait_time"] == 0.0


def test_a_wait_reported_at_dispatch_counts_then_and_only_once(live, clock):
    rec = finished("web_chat", wait_ms=2000)
    live.dispatched(rec.request_id, "web_chat", 2000)
    assert live.payload(SNAPSHOT)["by_source"]["web_chat"]["average_wait_time"] == 2.0
    clock.now += 100
    live.observe(rec)
    live.observe(finished("web_chat", wait_ms=4000))
    assert live.payload(SNAPSHOT)["by_source"]["web_chat"]["average_wait_time"] == 3.0
    clock.now += 250  # the dispatch-time wait has left the window, the others not
    assert live.payload(SNAPSHOT)["by_source"]["web_chat"]["average_wait_time"] == 4.0


def test_it_counts_statuses_of_the_last_five_minutes(live, clock):
    live.observe(finished(status=500))
    clock.now += 100
    live.observe(finished(status=200))
    live.observe(finished(status=200))
    live.observe(finished(status=499, stage="streaming"))
    assert live.payload(SNAPSHOT)["status_counts"] == {"200": 2, "499": 1, "500": 1}
    clock.now += 250
    assert live.payload(SNAPSHOT)["status_counts"] == {"200": 2, "499": 1}


def test_tokens_per_second_divide_completion_tokens_by_the_time_slots_were_held(live, clock):
    live.observe(finished(wait_ms=1000, duration_ms=5000, completion_tokens=100))  # 4 s held
    live.observe(finished(wait_ms=0, duration_ms=1000, completion_tokens=50))  # 1 s held
    live.observe(finished(wait_ms=0, duration_ms=900))  # an embedding: no tokens generated
    assert live.payload(SNAPSHOT)["tokens_per_second"] == 30.0
    clock.now += 61
    assert live.payload(SNAPSHOT)["tokens_per_second"] == 0.0


def test_it_stamps_the_payload_with_the_current_utc_time(live, clock):
    clock.now += 90
    assert live.payload(SNAPSHOT)["generated_at"] == "2024-05-01T12:01:30Z"


def test_history_draws_sampled_queue_lengths_in_ten_second_points(live, clock):
    clock.now = 2000.0  # a point boundary
    for second in range(35):
        # Within each point the queue rises and falls: the chart shows its peak.
        live.sample({"queue_length": second * 3 % 10 + second // 10 * 10, "active_requests": 1})
        if second < 10:
            live.observe(finished("custom_app", wait_ms=second * 1000))
        clock.now += 1
    history = live.payload(SNAPSHOT)["history"]
    assert [point["queue_length"] for point in history] == [9, 19, 29]  # the highest of each point
    assert [point["active_requests"] for point in history] == [1, 1, 1]
    first = history[0]["by_source"]["custom_app"]
    assert first == {
        "requests_per_minute": 60.0,
        "p50_wait_time": 4.0,
        "p95_wait_time": 9.0,
        "gpu_seconds": 0.0,
    }
    assert history[1]["by_source"]["custom_app"]["requests_per_minute"] == 0.0
    starts = [point["at"] for point in history]
    assert starts == ["2024-05-01T12:16:40Z", "2024-05-01T12:16:50Z", "2024-05-01T12:17:00Z"]


def test_history_keeps_idle_stretches_on_the_time_axis_and_stays_bounded(live, clock):
    clock.now = 2000.0
    live.sample({"queue_length": 5, "active_requests": 1})
    clock.now += 40
    history = live.payload(SNAPSHOT)["history"]
    assert [point["queue_length"] for point in history] == [5, None, None, None]
    clock.now += 3 * 3600
    history = live.payload(SNAPSHOT)["history"]
    assert len(history) == HISTORY_POINTS


def test_memory_stays_bounded_under_a_long_steady_load(live, clock):
    for _ in range(2000):
        live.observe(finished(wait_ms=10))
        live.sample(SNAPSHOT)
        clock.now += 1
    assert len(live._seconds) <= 300
    assert len(live._points) <= HISTORY_POINTS


def test_the_payload_is_plain_json(live):
    live.observe(finished(completion_tokens=5, duration_ms=100))
    live.sample(SNAPSHOT)
    payload = live.payload(SNAPSHOT)
    assert json.loads(json.dumps(payload)) == payload


@pytest.mark.parametrize(
    ("values", "pct", "expected"),
    [
        ([], 95, 0.0),
        ([3.0], 95, 3.0),
        ([1.0, 2.0], 50, 1.0),
        ([1.0, 2.0], 51, 2.0),
        ([1.0, 2.0, 3.0], 100, 3.0),
    ],
)
def test_percentiles_are_nearest_rank(values, pct, expected):
    assert percentile(values, pct) == expected


def test_a_refusal_outside_the_queued_lane_counts_in_the_answers_only(live, clock):
    # docs/contract.md §11: the dashboard's answer chips count 401/403 (a bad key on /api/tags too).
    live.refused(401)
    live.refused(403)
    live.observe(finished(status=200))
    payload = live.payload(SNAPSHOT)
    assert payload["status_counts"] == {"200": 1, "401": 1, "403": 1}
    assert payload["requests_per_minute"] == 1
    clock.now += 301
    assert live.payload(SNAPSHOT)["status_counts"] == {}


def test_cloud_requests_are_counted_apart_and_not_as_gpu_tokens(live, clock):
    live.observe(finished(model="llama3.2", completion_tokens=30, duration_ms=1000.0))
    live.observe(finished(model="gpt-oss:120b-cloud", completion_tokens=900, duration_ms=1000.0))
    live.observe(finished(model="qwen3-coder:cloud", status=403))
    payload = live.payload(SNAPSHOT)
    assert payload["cloud"] == {"requests_per_minute": 2}
    assert payload["requests_per_minute"] == 3
    assert payload["tokens_per_second"] == 30.0
    clock.now += 61
    assert live.payload(SNAPSHOT)["cloud"] == {"requests_per_minute": 0}
